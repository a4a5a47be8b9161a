"""Dropping items a run does not want, by event type and by delta type.

An item's names are its event type (``content_block_delta``, ``message_stop``, ``rillet.cost``, or
a type the SDK does not know yet) and, for a ``content_block_delta``, its delta type
(``text_delta``, ``thinking_delta``, ...). Patterns are ``fnmatch`` globs (``rillet.*``), matched
case-sensitively. An item is dropped when any of its names matches ``exclude``, or when ``include``
is given and none of its names matches it: exclude wins, and an empty ``include`` means everything.
So ``include={"content_block_delta"}, exclude={"thinking_delta"}`` keeps text and tool deltas only.
``rillet.end`` is never dropped: every stream must end, in every sink.

Verdicts are memoised per (event type, delta type), a handful per run, so the hot path is one
attribute read and one dict lookup per item.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from pipeline.events import Item, event_type
from pipeline.stages._base import Stage, StageFactory, StreamContext

KEPT_ALWAYS = frozenset({"rillet.end"})
"""Event types no filter drops."""

_NO_ITEMS: tuple[Item, ...] = ()


class FilterStage:
    """Passes or drops each item by its names; see the module docstring for the exact rule."""

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        self.include = frozenset(include)
        self.exclude = frozenset(exclude)
        self._verdicts: dict[tuple[str, str | None], bool] = {}

    @classmethod
    def factory(cls, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> StageFactory:
        """A factory for configuration: one filter per stream, sharing the validated pattern sets."""
        kept, dropped = frozenset(include), frozenset(exclude)

        def build(ctx: StreamContext) -> Stage:
            return cls(kept, dropped)

        return build

    def process(self, item: Item) -> tuple[Item, ...]:
        """The item, or nothing."""
        kind = event_type(item)
        delta = getattr(item.event.delta, "type", None) if kind == "content_block_delta" else None
        key = (kind, delta)
        keep = self._verdicts.get(key)
        if keep is None:
            keep = self._verdicts[key] = self.keeps(kind, delta)
        return (item,) if keep else _NO_ITEMS

    def finish(self) -> tuple[Item, ...]:
        """Nothing: a filter holds no items back."""
        return _NO_ITEMS

    def keeps(self, kind: str, delta: str | None = None) -> bool:
        """Whether an item of event type ``kind`` (and delta type ``delta``) passes."""
        if kind in KEPT_ALWAYS:
            return True
        names = (kind,) if delta is None else (kind, delta)
        if _matches(names, self.exclude):
            return False
        return not self.include or _matches(names, self.include)


def _matches(names: tuple[str, ...], patterns: frozenset[str]) -> bool:
    return any(fnmatchcase(name, pattern) for name in names for pattern in patterns)
