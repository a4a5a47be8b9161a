"""Loop detection: a passage repeating at the tail of the streamed text, warned about or aborted.

Thresholds are design A of ``reference/repetition-and-resume.md`` §1.3, calibrated there to fire
on none of 60 MB of real prose and code: whitespace runs collapse to one space, and a tail that
repeats a unit of ``p`` normalised chars fires once it holds ``k_min(p)`` copies over at least
``s_min(p)`` chars, with a letter or digit in the unit; looser limits apply inside a code fence.

The search differs from the reference's KMP rescan, which costs ~20 µs of Python per char. Every
``check_every`` chars, the last ``needle`` chars are looked up backwards with ``str.rfind``: a tail
that repeats with period ``p`` holds the needle again ``p`` chars back, so each occurrence is a
candidate period, kept if the tail holds two copies of it; the length of tail it repeats over is
found by binary search with slice comparisons. All of it runs in C over a window of at most
``window`` chars, so the work per char is bounded whatever the stream's length.

Each content block gets its own detector, reset when a block or attempt starts (a resume sends
new blocks). Text and thinking are watched by default: a thinking loop burns tokens unseen, and
thinking is prose. Tool input (``tool_input``) is JSON, so it takes the code thresholds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pipeline.events import AbortRequested, Item, RepetitionDetected, streamed_text
from pipeline.stages._base import StreamContext

Channel = Literal["text", "thinking", "tool_input"]


class Rule(NamedTuple):
    """Fire when a unit of at least ``period`` chars repeats ``repeats`` times over ``span`` chars."""

    period: int
    repeats: float
    span: int


PROSE_RULES = (
    Rule(1, 0, 160),
    Rule(2, 32, 128),
    Rule(5, 16, 160),
    Rule(10, 8, 256),
    Rule(20, 6, 256),
    Rule(40, 4, 256),
    Rule(80, 3, 0),
)
"""The reference's prose column; one char repeating follows ``FORMATTING_RUN`` when it is formatting."""

CODE_RULES = (
    Rule(1, 0, 1024),
    Rule(10, 64, 1024),
    Rule(20, 32, 1024),
    Rule(40, 16, 1024),
    Rule(80, 8, 0),
    Rule(160, 4, 0),
)
"""Inside a code fence, and for tool input: code repeats on purpose (tables, fixtures)."""

FORMATTING_CHARS = frozenset("-=_*#~+.|`<>/\\") | frozenset(map(chr, range(0x2500, 0x2580)))
FORMATTING_RUN = 1024
"""Table separators reach 227 dashes in real markdown, so a run of one formatting char needs more."""

_BLOCK_CHANNELS: dict[str, Channel] = {
    "text": "text",
    "thinking": "thinking",
    "tool_use": "tool_input",
    "server_tool_use": "tool_input",
}
_ALNUM = re.compile(r"[^\W_]")
_FENCE_MARKERS = ("\n```", "\n~~~")


@dataclass(frozen=True, slots=True)
class RepetitionSettings:
    """How the detector looks and what it does; the defaults are the reference's calibrated ones."""

    action: Literal["warn", "abort"] = "warn"
    channels: frozenset[Channel] = frozenset({"text", "thinking"})
    prose_rules: tuple[Rule, ...] = PROSE_RULES
    code_rules: tuple[Rule, ...] = CODE_RULES
    min_period: int = 1
    max_period: int = 5461
    """A fire needs three copies, so a 16384-char window sees periods up to a third of it."""
    window: int = 16384
    check_every: int = 64
    """A fire comes at most this many normalised chars late."""
    needle: int = 32
    max_candidates: int = 16
    """Earlier occurrences of the needle tried per check, nearest first; bounds the work."""


class Loop(NamedTuple):
    """A repetition found at the tail: its unit's length, copies, total length and first copy."""

    period: int
    repeats: float
    span: int
    unit: str


@dataclass(slots=True)
class _Tail:
    """One content block's normalised tail and fence state, checked every ``check_every`` chars."""

    settings: RepetitionSettings
    code: bool
    text: str = ""
    pending: list[str] = field(default_factory=list)
    pending_chars: int = 0
    after_space: bool = True
    raw_end: str = "\n"
    """The last raw chars, since a fence marker may be split across deltas; a block starts a line."""
    fences: int = 0
    firing: bool = False

    def feed(self, raw: str) -> Loop | None:
        """Takes a delta; returns a loop when a check finds one that is not already reported."""
        joined = self.raw_end + raw
        if "``" in joined or "~~" in joined:
            self.fences += sum(map(joined.count, _FENCE_MARKERS))
        self.raw_end = joined[-3:]
        words = raw.split()
        text = " ".join(words)
        if raw[-1:].isspace() and words:
            text += " "
        if raw[:1].isspace() and not self.after_space:
            text = " " + text
        if not text:
            return None
        self.after_space = text[-1] == " "
        self.pending.append(text)
        self.pending_chars += len(text)
        return self.check() if self.pending_chars >= self.settings.check_every else None

    def check(self) -> Loop | None:
        """Searches the tail; a loop is reported once per episode, until a check finds none."""
        if not self.pending:
            return None
        window = self.settings.window
        # Appended in place (the only reference, so CPython grows the string rather than copying
        # it) and cut back to the window once it holds two: about one char copied per char fed.
        text, self.text = self.text, ""
        text += "".join(self.pending)
        if len(text) > 2 * window:
            text = text[-window:]
        self.text = text
        self.pending.clear()
        self.pending_chars = 0
        rules = self.settings.code_rules if self.code or self.fences % 2 else self.settings.prose_rules
        loop = find_loop(text, rules, self.settings, max(0, len(text) - window))
        if loop is None or self.firing:
            self.firing = loop is not None
            return None
        self.firing = True
        return loop


def find_loop(
    text: str, rules: tuple[Rule, ...], settings: RepetitionSettings, start: int = 0
) -> Loop | None:
    """The repetition at the end of ``text[start:]`` that meets ``rules``, nearest candidate period first.

    A candidate is judged on the longest tail it repeats over, and only where that tail is longer
    than any smaller period's: 40 copies of an 18-char line are not 4 copies of a 162-char unit.
    ``start`` spares the caller a copy of the window it searches.
    """
    n = len(text)
    length = n - start
    size = settings.needle
    if length <= size:
        return None
    needle = text[n - size :]
    lowest = max(start, n - size - settings.max_period)
    end = n - 1
    covered = 0
    for _ in range(settings.max_candidates):
        start = text.rfind(needle, lowest, end)
        if start < 0:
            return None
        period = n - size - start
        end = start + size - 1
        if period < settings.min_period or 2 * period > length or not _periodic(text, period, 2 * period):
            continue
        span = _longest_periodic(text, period, 2 * period, length)
        if span > covered:
            covered = span
            loop = _judge(text, period, span, rules)
            if loop is not None:
                return loop
    return None


def _periodic(text: str, period: int, span: int) -> bool:
    """Whether the last ``span`` chars of ``text`` repeat with ``period``: one C-level comparison."""
    n = len(text)
    return text[n - span : n - period] == text[n - span + period :]


def _judge(text: str, period: int, span: int, rules: tuple[Rule, ...]) -> Loop | None:
    """The loop of ``period`` over the last ``span`` chars, if long enough for its rule."""
    rule = next((rule for rule in reversed(rules) if rule.period <= period), None)
    unit = text[len(text) - span :][:period]
    if rule is None or unit.isspace() or (period > 1 and not _ALNUM.search(unit)):
        return None
    least = max(rule.span, FORMATTING_RUN) if unit in FORMATTING_CHARS else rule.span
    if span < max(rule.repeats * period, least):
        return None
    return Loop(period, span / period, span, unit)


def _longest_periodic(text: str, period: int, known: int, limit: int) -> int:
    """The longest tail of ``text``, up to ``limit`` chars, with ``period``, given that the last
    ``known`` chars have it."""
    low, high = known, limit + 1
    while high - low > 1:
        middle = (low + high) // 2
        if _periodic(text, period, middle):
            low = middle
        else:
            high = middle
    return low


class RepetitionStage:
    """Watches each content block for a loop; warns once per episode, or asks the runner to abort."""

    def __init__(self, ctx: StreamContext, settings: RepetitionSettings | None = None) -> None:
        self.settings = settings or RepetitionSettings()
        self._ctx = ctx
        self._tails: dict[int, _Tail] = {}
        self._aborted = False

    def process(self, item: Item) -> Sequence[Item]:
        event = item.event
        kind = event.type
        if kind == "content_block_delta":
            tail = self._tails.get(event.index)
            if tail is not None:
                text = streamed_text(event.delta)
                if text is not None:
                    loop = tail.feed(text)
                    if loop is not None:
                        return (item, *self._fire(item, loop))
        elif kind == "content_block_start":
            self._watch(event.index, getattr(event.content_block, "type", None))
        elif kind == "content_block_stop":
            tail = self._tails.pop(event.index, None)
            loop = tail.check() if tail is not None else None
            if loop is not None:
                return (item, *self._fire(item, loop))
        elif kind == "message_start":
            self._tails.clear()
        return (item,)

    def finish(self) -> Sequence[Item]:
        """Checks blocks the stream left open; only warns, since the stream is already over."""
        found = [loop for tail in self._tails.values() if (loop := tail.check()) is not None]
        self._tails.clear()
        return [self._ctx.item(self._detected(loop, "warn")) for loop in found]

    def _watch(self, index: int, block_type: str | None) -> None:
        channel = _BLOCK_CHANNELS.get(block_type or "")
        if self._aborted or channel not in self.settings.channels:
            self._tails.pop(index, None)
            return
        self._tails[index] = _Tail(self.settings, code=channel == "tool_input")

    def _fire(self, item: Item, loop: Loop) -> list[Item]:
        detected = item.derive(self._detected(loop, self.settings.action))
        if self.settings.action == "warn":
            return [detected]
        self._aborted = True
        self._tails.clear()
        reason = (
            f"the text repeats a {loop.period}-char passage {loop.repeats:.1f} times "
            f"({loop.span} chars): {loop.unit[:80]!r}"
        )
        return [detected, item.derive(AbortRequested("aborted_repetition", reason))]

    @staticmethod
    def _detected(loop: Loop, action: Literal["warn", "abort"]) -> RepetitionDetected:
        return RepetitionDetected(loop.period, round(loop.repeats, 2), loop.span, action, loop.unit[:80])
