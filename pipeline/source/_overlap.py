"""Where a continuation's new text starts: restated words and reopened markup removed, whitespace reconciled.

Pure string functions (reference §2.3 step 4), so every rule has a unit test of its own.

A *prefill* continuation is the true continuation of the text sent back, so nothing but
whitespace is ever trimmed from it: the client stripped the partial's trailing whitespace ``w``
(the API demands it) but sinks already have ``w``, so the part of the continuation's leading
whitespace that repeats ``w`` (their common prefix) is dropped, and any extra, such as the second
newline of a paragraph break, is kept.

A *continue* turn's answer often restates the end of the partial first. Both sides are folded
(whitespace runs collapsed, case folded, with a map back to raw offsets) and the cut is, in order:

1. after the longest suffix of the sent text that prefixes the head, if it is at least 16 chars
   (``…the story of the`` + ``the story of the mill…``), or, for a shorter one, if the head does
   not start with whitespace and the overlap starts a word of the tail, ends a word or a
   punctuation mark of the head, and holds a word char or two marks, or one the head repeats
   (``…stored in`` + ``in memory``, ``…I'`` + ``I'll``, ``…\n- **`` + ``- **Title**``, ``…\n#``
   + ``## Title``), or a cut word of at least :data:`CUT_WORD_CHARS` chars restated whole
   (``…the conf`` + ``configuration``, ``…after the rema`` + ``after the remarkable``). A
   seamless continuation of a whole word starts with a space, and one of a cut word continues
   it, so ``…the plugin`` + ``in production``, ``…a`` + ``ardvark`` and a table's ``|`` + ``| next
   row`` are kept. Models stream sub-word tokens, so a drop cuts a word more often than not, and
   a restatement then begins by repeating the cut word; a seamless continuation that repeats
   the cut word's last three or more letters (``…mur`` + ``mur``) is what would be lost instead;
2. just after an occurrence, in the held head, of the sent text's last 48 (then 32) folded chars,
   provided the head before it is explained: it agrees with the sent text backwards from there
   up to at most 100 unexplained chars (a preamble). This finds a restated passage after a
   preamble (``Sure, continuing: …the p99 dropped after the conf`` + ``iguration…``) and a full
   restart, but not the same 32-char phrase recurring further on, which templated prose does;
3. when the head is all the attempt will send (``final``: its block stopped, or it failed) and
   is a run of at least 16 folded chars that the sent text holds, starting a word, and ending in
   its last 100 chars: after all of it. A restatement that ran out of ``max_tokens`` (or was cut
   off) before it reached the new text is neither a suffix of the sent text nor long enough to
   hold an anchor (``…throughout the province`` + ``of the instruments throughout the provi``);
4. otherwise nowhere: a reworded restart cannot be found by string matching and is kept whole.

Before that, a fence line reopening the code block the sent text is inside, and a restated
table header with its separator row, are dropped.
"""

from __future__ import annotations

import re

ANCHORS = (48, 32)
"""Folded tail lengths searched for in the head, longest first."""

MIN_OVERLAP = 16
"""A suffix/prefix overlap this long is a restatement whatever the word boundaries."""

CUT_WORD_CHARS = 3
"""A cut word ending the sent text that the head repeats at least this much of is being restated:
below it, ``…a`` + ``ardvark`` is a seamless continuation of "aardvark"."""

PREAMBLE_CHARS = 100
"""Head chars before an anchor that need not agree with the sent text (a preamble: "Sure, continuing
from where I left off:" is 40). Seamless prose that happens to repeat a 32-char phrase two sentences
on must not pass for one: at 200, a 185-char stretch of new text was cut as a "preamble"."""

HOLD_CHARS = 1500
"""How much of a continue turn's answer is held back before the cut is decided."""

TAIL_CHARS = 2000
"""How much of the sent text is compared: more than the head can overlap."""

_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})(.*)")
_SEPARATOR = re.compile(r"\|?\s*:?-{3,}")


def fold(text: str) -> tuple[str, list[int]]:
    """``text`` with whitespace runs as one space and case folded, and each folded char's raw offset."""
    chars: list[str] = []
    index: list[int] = []
    space = False
    for i, char in enumerate(text):
        if char.isspace():
            if not space:
                chars.append(" ")
                index.append(i)
            space = True
            continue
        space = False
        lower = char.lower()
        chars.append(lower if len(lower) == 1 else char)
        index.append(i)
    return "".join(chars), index


def drop_repeated(sent: str, text: str) -> tuple[str, str]:
    """Drops from ``text`` its common prefix with ``sent``, which sinks already have.

    Returns what of ``sent`` is still to be matched (non-empty only when ``text`` was consumed
    whole, so the next delta goes on matching) and the text to emit.
    """
    n = 0
    limit = min(len(sent), len(text))
    while n < limit and sent[n] == text[n]:
        n += 1
    if n == len(text) and n < len(sent):
        return sent[n:], ""
    return "", text[n:]


def restated_end(sent: str, head: str, *, final: bool = False) -> int:
    """Offset in ``head`` (a continue turn's first chars) where the text after ``sent`` starts;
    ``final``: the head is all the attempt will send."""
    start = _markup_restated(sent, head)
    return start + _text_restated(sent.rstrip(), head[start:], final=final)


def _text_restated(sent: str, head: str, *, final: bool = False) -> int:
    tail, _ = fold(sent[-TAIL_CHARS:])
    folded, index = fold(head)
    end = (
        _overlap_end(tail, folded, short_ok=not head[:1].isspace())
        or _anchor_end(tail, folded)
        or (_cut_short(tail, folded) if final else 0)
    )
    if end == 0:
        return 0
    return index[end] if end < len(folded) else len(head)


def _anchor_end(tail: str, head: str) -> int:
    for size in ANCHORS:
        if len(tail) < size:
            continue
        found = head.find(tail[-size:])
        while found >= 0:
            end = found + size
            if end - _agreeing(tail, head[:end]) <= PREAMBLE_CHARS:
                return end
            found = head.find(tail[-size:], found + 1)
    return 0


def _cut_short(tail: str, head: str) -> int:
    """All of ``head`` if it is a restatement of the tail's end that stopped short, else 0."""
    if len(head) < MIN_OVERLAP or head[0] == " ":
        return 0
    found = tail.rfind(head, max(0, len(tail) - len(head) - PREAMBLE_CHARS))
    if found < 0 or (found > 0 and tail[found - 1] != " "):
        return 0
    return len(head)


def _agreeing(a: str, b: str) -> int:
    """Length of the common suffix of ``a`` and ``b``."""
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _overlap_end(tail: str, head: str, *, short_ok: bool) -> int:
    for size in range(min(len(tail), len(head)), 0, -1):
        if not tail.endswith(head[:size]):
            continue
        if size >= MIN_OVERLAP:
            return size
        if short_ok and _whole_words(tail, head, size):
            return size
    return 0


def _whole_words(tail: str, head: str, size: int) -> bool:
    """The overlap starts a word of the tail, ends a word or a mark of the head (or restates the
    tail's cut last word, :data:`CUT_WORD_CHARS` or more), and is not a lone mark.

    A lone mark counts only when the head repeats it (``…\n\n#`` + ``## Title``: the heading
    marker restated whole); ``…\n\n#`` + ``# Title`` and a table's ``|`` + ``| row`` are seamless.
    """
    overlap = head[:size]
    starts_word = size == len(tail) or tail[-size - 1] == " "
    ends_word = (
        size == len(head)
        or not _wordish(head[size])
        or not _wordish(head[size - 1])
        or _last_word_chars(overlap) >= CUT_WORD_CHARS
    )
    substantial = (
        any(map(_wordish, overlap))
        or len(overlap.replace(" ", "")) >= 2
        or (size < len(head) and head[size] == overlap[-1])
    )
    return starts_word and ends_word and substantial


def _last_word_chars(text: str) -> int:
    n = 0
    while n < len(text) and _wordish(text[-1 - n]):
        n += 1
    return n


def _wordish(char: str) -> bool:
    return char.isalnum() or char == "_"


def _markup_restated(sent: str, head: str) -> int:
    """Offset after a reopened fence line or a restated table header at the head's start, else 0."""
    lead = len(head) - len(head.lstrip())
    lines = head[lead:].split("\n", 2)
    fence = _FENCE.fullmatch(lines[0])
    if fence is not None and len(lines) > 1 and _in_open_fence(sent):
        after = lead + len(lines[0]) + 1
        reopened = fence.group(2).strip() or _text_restated(sent.rstrip(), head[after:]) > 0
        return after if reopened else 0
    header = _table_header(sent)
    if header is not None and len(lines) > 2 and (lines[0].strip(), lines[1].strip()) == header:
        return lead + len(lines[0]) + len(lines[1]) + 2
    return 0


def _in_open_fence(text: str) -> bool:
    """Whether ``text`` ends inside a fenced code block (CommonMark's rules, simplified)."""
    opened: str | None = None
    for line in text.split("\n"):
        match = _FENCE.fullmatch(line)
        if match is None:
            continue
        marker = match.group(1)
        if opened is None:
            opened = marker
        elif marker[0] == opened[0] and len(marker) >= len(opened) and not match.group(2).strip():
            opened = None
    return opened is not None


def _table_header(text: str) -> tuple[str, str] | None:
    """The header and separator rows of the table ``text`` ends in, stripped; None if it ends in none."""
    rows: list[str] = []
    for line in reversed(text.rstrip().split("\n")):
        if not line.lstrip().startswith("|"):
            break
        rows.append(line.strip())
    if len(rows) < 2 or not _SEPARATOR.match(rows[-2]):
        return None
    return rows[-1], rows[-2]
