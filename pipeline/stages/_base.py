"""The stage protocol: plain synchronous objects chained inside one task per stream.

A channel hop costs about a third of the SDK's own parsing per event (docs/architecture.md), so stages do
not get a task each: the runner calls ``process`` for every item and ``finish`` once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.events import Item


@dataclass(frozen=True, slots=True)
class StreamContext:
    """What a stage may know about the logical stream it serves, fixed when the stream starts."""

    stream_id: str
    model: str
    request: dict[str, Any]
    started_ns: int

    def item(self, event: Any) -> Item:
        """An item for an event a stage emits on its own (from ``finish``), stamped now."""
        return Item(self.stream_id, event, time.perf_counter_ns())


class Stage(Protocol):
    """Turns each item into zero or more items; returning the input passes it through.

    Results are sequences (a tuple, usually of one item) so the runner can take the common
    one-in, one-out case without building a list per stage.
    """

    def process(self, item: Item) -> Sequence[Item]: ...

    def finish(self) -> Sequence[Item]: ...


StageFactory = Callable[[StreamContext], Stage]
"""Stages are stateful per stream, so configuration builds a factory and each stream gets fresh ones."""
