"""The one protocol every sink meets, and the per-sink policies the fan-out applies to it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from pipeline.errors import ConfigError
from pipeline.events import Item


class Sink(Protocol):
    """An async resource that writes batches of items.

    ``__aenter__`` opens the destination; ``__aexit__`` flushes and closes it, always releasing,
    even when the run failed or was cancelled. ``write`` gets whatever was waiting as one batch,
    in order; a dead destination raises an error chained to its cause.
    """

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def write(self, batch: Sequence[Item]) -> None: ...


class OnFull(enum.StrEnum):
    """What a full sink buffer does to the next item."""

    BLOCK = "block"
    """The producer waits: nothing is lost, the source slows down."""
    DROP_OLDEST = "drop_oldest"
    """The oldest waiting item is discarded and counted: for live views that want the latest."""
    DROP_NEWEST = "drop_newest"
    """The new item is discarded and counted."""


class OnError(enum.StrEnum):
    """What a sink's failure does to the run."""

    FAIL = "fail"
    """Stop the run cleanly; the other sinks are flushed."""
    DISABLE = "disable"
    """Stop feeding this sink, count and report the error; the others go on."""


@dataclass(frozen=True, slots=True)
class Buffer:
    """A sink's bounded queue: unbounded buffers are refused, since memory is the thing they lose."""

    max_items: int = 1024
    on_full: OnFull = OnFull.BLOCK

    def __post_init__(self) -> None:
        if not 1 <= self.max_items <= 10_000_000:
            raise ConfigError(
                f"buffer max_items must be between 1 and 10000000, got {self.max_items!r}: "
                "an unbounded buffer lets a slow sink grow memory without limit"
            )


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """A sink with the policies the fan-out applies to it."""

    sink: Sink
    buffer: Buffer = Buffer()
    on_error: OnError = OnError.FAIL
    linger: float | None = None
    """Seconds a sink's task waits after the first waiting item, so that more join its batch; ``None``
    takes the sink's own ``linger`` attribute (0 if it has none). Sources yield one event at a time,
    so without it a sink whose write is costly (a thread hop for aiofiles) writes one item per call."""

    def effective_linger(self) -> float:
        return self.linger if self.linger is not None else float(getattr(self.sink, "linger", 0.0))
