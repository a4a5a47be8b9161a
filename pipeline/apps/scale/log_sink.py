"""The event log sink: a job's frames, coalesced, appended to its Redis log under its epoch.

The log is the job's source of truth (browsers on any replica read it, a new owner resumes from
it), so this sink runs under the ``block`` policy and never drops: while Redis is away it retries
(:func:`~pipeline.apps.scale._retry.persist`), its lane fills, and backpressure reaches the model
stream. Its ``linger`` makes the fan-out gather 50-100 ms of items into one ``write``, which
becomes one fenced append: consecutive text deltas merge into one frame, and a job costs one
round trip per window. A takeover's refusal (:class:`Fenced`) is raised, so the fan-out fails the
run and the runner closes the upstream response at once: a fenced worker stops paying. So is
:class:`Lost` (Redis came back from a crash without this sink's latest appends): the worker then
takes the job again and resumes from what the log kept.

Items a new owner replays from the log (everything before the attempt ``live_from``) update the
encoder's state but are not written again. The ``end`` frame is held back: the worker appends it
with the job's outcome (:meth:`EventLog.finish`), so a log has one ``end``, written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import anyio

from pipeline.apps.scale._retry import persist
from pipeline.apps.scale.frames import FrameEncoder
from pipeline.apps.scale.protocols import EventLog, Fenced, Frame, LogEntry, Lost
from pipeline.events import AttemptStarted, Item

DEFAULT_LINGER = 0.075

AppendObserver = Callable[[float, int], None]
"""Called with each append's seconds and entry count (for metrics)."""


class RedisLogSink:
    """Appends one job's frames to its log; see the module docstring."""

    def __init__(
        self,
        log: EventLog,
        job_id: str,
        epoch: int,
        *,
        next_seq: int = 1,
        live_from: int = 1,
        linger: float = DEFAULT_LINGER,
        observe: AppendObserver | None = None,
        name: str = "redis-log",
    ) -> None:
        self.name = name
        self.linger = linger
        self.job_id = job_id
        self.epoch = epoch
        self.next_seq = next_seq
        self.end: Frame | None = None
        self.fenced = False
        self.lost: Lost | None = None
        """Set when Redis lost this sink's latest appends (a crash): the worker must take the job again."""
        self.chars = 0
        self._log = log
        self._live_from = live_from
        self._live = live_from <= 1
        self._encoder = FrameEncoder(job_id)
        self._observe = observe
        self._closed = False

    async def write(self, batch: Sequence[Item]) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        encoder = self._encoder
        for item in batch:
            event = item.event
            if not self._live and isinstance(event, AttemptStarted) and event.attempt >= self._live_from:
                encoder.take()  # the replayed history: already in the log
                self._live = True
            if getattr(event, "type", None) == "content_block_delta" and event.delta.type == "text_delta":
                self.chars += len(event.delta.text)
            encoder.add(item)
        entries = []
        for frame in encoder.take():
            if frame.event == "end":
                self.end = frame
            elif self._live:
                entries.append(LogEntry(self.next_seq, self.epoch, frame))
                self.next_seq += 1
        if entries:
            await self._append(entries)

    async def _append(self, entries: list[LogEntry]) -> None:
        started = time.perf_counter()
        try:
            await persist(lambda: self._log.append(self.job_id, self.epoch, entries, self.chars), "append")
        except Fenced:
            self.fenced = True
            raise
        except Lost as exc:
            self.lost = exc
            raise
        if self._observe is not None:
            self._observe(time.perf_counter() - started, len(entries))

    def end_entry(self) -> LogEntry | None:
        """The held-back ``end`` frame at the next id, for :meth:`EventLog.finish`."""
        return None if self.end is None else LogEntry(self.next_seq, self.epoch, self.end)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
