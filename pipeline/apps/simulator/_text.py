"""Deterministic prose: the same seed always gives the same text, on every machine.

**Tokens.** :func:`count_tokens` is the one tokenizer of the simulator: usage counts,
``max_tokens``, the ``count_tokens`` endpoint and the pacing all go through :data:`TOKEN_RE`. A
token is a run of leading whitespace (possibly empty) followed by at most five word characters
(a longer word is cut into pieces of five from its start) or one other non-space character;
whitespace at the very end of a text is a token of its own. So ``"## The riverbanks"`` is five
tokens (``#``, ``#``, `` The``, `` river``, ``banks``) and a paragraph break belongs to the token
after it (``"\\n\\nThe"``). On the generated English prose a token averages about 4 characters,
as Claude's tokenizer gives, so estimates at 4 characters a token agree with the counts. The
pieces of any text concatenate back to it exactly, and a text cut at a token boundary tokenizes
into the same tokens as before (before and after the cut), which is what makes prefill
continuation exact.

**Texts.** A text of a *kind* is the prefix of one endless-or-natural sequence of pieces seeded by
an integer: asking for more tokens never changes the tokens already produced, so the text for a
small ``max_tokens`` is a prefix of the text for a large one. A report's title and first
paragraph take up the prompt's topic (:mod:`._topic`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from . import _bank as bank
from ._topic import title_case

TOKEN_RE = re.compile(r"\s*(?:\w{1,5}|[^\w\s])|\s+")
"""One token: leading whitespace plus up to five word characters or one other character (see the
module doc)."""

TextKind = Literal["report", "loop", "markup", "tool_intro", "thinking"]

REPORT_TOKENS_RANGE = (9_000, 15_000)
"""Natural length of a report, in tokens, drawn per seed: long, so ``max_tokens`` usually governs."""


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` under the simulator's definition."""
    return len(TOKEN_RE.findall(text))


def take_tokens(text: str, n: int) -> tuple[str, int]:
    """The shortest prefix of ``text`` holding its first ``n`` tokens, and how many it holds."""
    if n <= 0:
        return "", 0
    taken = 0
    end = 0
    for match in TOKEN_RE.finditer(text):
        end = match.end()
        taken += 1
        if taken == n:
            break
    return text[:end], taken


def iter_token_groups(text: str, sizes: Iterator[int]) -> Iterator[tuple[str, int]]:
    """Split ``text`` into consecutive pieces of ``next(sizes)`` tokens each (the last may be shorter)."""
    start = 0
    want = next(sizes)
    have = 0
    end = 0
    for match in TOKEN_RE.finditer(text):
        end = match.end()
        have += 1
        if have == want:
            yield text[start:end], have
            start = end
            have = 0
            want = next(sizes)
    if have:
        yield text[start:end], have


@dataclass(frozen=True, slots=True)
class Text:
    """A generated text: its string, its token count, and whether it reached its natural end."""

    text: str
    tokens: int
    complete: bool


class _Fields(dict[str, str]):
    """Template fields drawn on first use, so a sentence pays only for the slots it has."""

    def __init__(self, rng: random.Random, topic: str) -> None:
        super().__init__()
        self.rng = rng
        self.topic = topic

    def _other(self, pool: tuple[str, ...], first: str) -> str:
        taken = self[first]
        while (value := self.rng.choice(pool)) == taken:
            pass
        return value

    def __missing__(self, key: str) -> str:
        r = self.rng
        value: str
        if key in ("noun", "adj", "verb", "subject"):
            pool = {"noun": bank.NOUNS, "adj": bank.ADJECTIVES, "verb": bank.VERBS, "subject": bank.SUBJECTS}
            value = r.choice(pool[key])
        elif key in ("Noun", "Adj", "Subject"):
            value = self[key.lower()].title()
        elif key == "noun2":
            value = self._other(bank.NOUNS, "noun")
        elif key == "adj2":
            value = self._other(bank.ADJECTIVES, "adj")
        elif key == "verb2":
            value = self._other(bank.VERBS, "verb")
        elif key == "place":
            value = r.choice(bank.PLACES)
        elif key == "place2":
            value = self._other(bank.PLACES, "place").split(" ", 1)[1]
        elif key == "adv":
            value = r.choice(bank.ADVERBS)
        elif key == "time":
            value = r.choice(bank.TIMES)
        elif key == "num":
            value = f"{r.randint(2, 40) * r.choice((1, 10, 25, 100)):,}"
        elif key == "year":
            value = str(r.randint(1600, 1950))
        elif key == "Conn":
            value = r.choice(bank.CONNECTORS)
        elif key == "topic":
            value = self.topic
        elif key == "Topic":
            value = title_case(self.topic)
        else:
            raise KeyError(key)
        self[key] = value
        return value


class _Filler:
    """Fills the bank's templates from one seeded random stream; ``topic`` fills ``{topic}``."""

    def __init__(self, rng: random.Random, topic: str = "") -> None:
        self.rng = rng
        self.topic = topic

    def fill(self, templates: tuple[str, ...]) -> str:
        s = self.rng.choice(templates).format_map(_Fields(self.rng, self.topic))
        return s[0].upper() + s[1:]


def _report_pieces(
    rng: random.Random, topic: str = "", *, markup: bool = False
) -> Iterator[tuple[str, bool]]:
    """Endless report: a title, then sections of a heading and paragraphs (and now and then a list).

    With a ``topic``, the title names it and an opening paragraph takes it up before the first
    section. Yields ``(piece, ends_paragraph)``; every piece but the first starts with its separator.
    """
    f = _Filler(rng, topic)
    if markup:
        yield "\ufeff# Markup Test: " + f.fill(bank.TITLES), True
        for i, sentence in enumerate(bank.MARKUP_SENTENCES):
            yield ("\n\n" if i == 0 else " ") + sentence, i == len(bank.MARKUP_SENTENCES) - 1
    elif topic:
        yield "# " + f.fill(bank.TOPIC_TITLES), True
        openings = rng.sample(bank.TOPIC_OPENINGS, 2)
        sentences = [f.fill((openings[0],)), f.fill(bank.TEMPLATES), f.fill((openings[1],))]
        for i, sentence in enumerate(sentences):
            yield ("\n\n" if i == 0 else " ") + sentence, i == len(sentences) - 1
    else:
        yield "# " + f.fill(bank.TITLES), True
    while True:
        yield "\n\n## " + f.fill(bank.HEADINGS), True
        for _ in range(rng.randint(2, 5)):
            n = rng.randint(3, 7)
            for s in range(n):
                if markup and rng.random() < 0.25:
                    sentence = rng.choice(bank.MARKUP_SENTENCES)
                else:
                    sentence = f.fill(bank.TEMPLATES)
                yield ("\n\n" if s == 0 else " ") + sentence, s == n - 1
        if rng.random() < 0.2:
            items = rng.randint(3, 5)
            for i in range(items):
                sep = "\n\n" if i == 0 else "\n"
                yield f"{sep}- **{f.fill(bank.HEADINGS)}**: {f.fill(bank.TEMPLATES)}", i == items - 1


def _loop_pieces(rng: random.Random, topic: str) -> Iterator[tuple[str, bool]]:
    """Normal prose for a few hundred tokens, then one paragraph repeated for ever."""
    before = rng.randint(200, 600)
    total = 0
    for piece, para_end in _report_pieces(rng, topic):
        yield piece, para_end
        total += count_tokens(piece)
        if para_end and total >= before:
            break
    f = _Filler(rng)
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < 240:
        sentences.append(f.fill(bank.TEMPLATES))
    unit = "\n\n" + " ".join(sentences)
    while True:
        yield unit, True


def _tool_intro_pieces(rng: random.Random) -> Iterator[tuple[str, bool]]:
    f = _Filler(rng)
    yield f.fill(bank.TOOL_INTROS), False
    yield " " + f.fill(bank.TEMPLATES), True


def _thinking_pieces(rng: random.Random) -> Iterator[tuple[str, bool]]:
    f = _Filler(rng)
    n = rng.randint(4, 9)
    for i in range(n):
        yield ("" if i == 0 else " ") + f.fill(bank.THINKING), i == n - 1


def _pieces(kind: TextKind, seed: int, topic: str) -> Iterator[tuple[str, bool]]:
    rng = random.Random(f"{kind}:{seed}")
    if kind == "report":
        return _report_pieces(rng, topic)
    if kind == "markup":
        return _report_pieces(rng, markup=True)
    if kind == "loop":
        return _loop_pieces(rng, topic)
    if kind == "tool_intro":
        return _tool_intro_pieces(rng)
    return _thinking_pieces(rng)


def natural_tokens(kind: TextKind, seed: int, override: int | None = None) -> int | None:
    """Token count at which a report may end (at the next paragraph end); None: the kind decides."""
    if kind not in ("report", "markup"):
        return None
    if override is not None:
        return override
    return random.Random(f"length:{seed}").randint(*REPORT_TOKENS_RANGE)


@lru_cache(maxsize=256)
def build_text(kind: TextKind, seed: int, limit: int, natural: int | None = None, topic: str = "") -> Text:
    """The first ``limit`` tokens of the text of ``kind`` for ``seed``, or all of it if shorter.

    A report ends naturally at the first paragraph end at or after ``natural`` tokens; its title
    and opening take up ``topic`` (the prompt's, see :mod:`._topic`) when there is one.
    """
    parts: list[str] = []
    total = 0
    it = _pieces(kind, seed, topic)
    current = next(it, None)
    while current is not None:
        piece, para_end = current
        n = count_tokens(piece)
        if total + n > limit:
            head, taken = take_tokens(piece, limit - total)
            parts.append(head)
            return Text("".join(parts), total + taken, False)
        parts.append(piece)
        total += n
        if natural is not None and para_end and total >= natural:
            return Text("".join(parts), total, True)
        current = next(it, None)
        if total == limit:
            return Text("".join(parts), total, current is None)
    return Text("".join(parts), total, True)
