"""Fan-out: every sink gets its own bounded channel and task, and its own policies.

The stage chain offers each item to every sink without yielding when there is room (``send_nowait``),
so a sink's task wakes up to a batch, not an item: the file sink needs that, one aiofiles call costing
about 100 µs. A full buffer applies the sink's :class:`~pipeline.sink.OnFull` policy. A sink's task
runs shielded from cancellation so that Ctrl-C still flushes what was received, bounded in time by
``flush_timeout`` once the fan-out closes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from pipeline.errors import ConfigError, SinkError
from pipeline.events import Item
from pipeline.sink import OnError, OnFull, SinkSpec

MAX_BATCH = 4096
"""The most items one ``write`` gets: bounds the latency a huge backlog adds to a live sink."""


@dataclass(frozen=True, slots=True)
class SinkStatistics:
    """A snapshot of one sink's lane, read at scrape or summary time."""

    name: str
    queued: int
    max_items: int
    written: int
    dropped: int
    errors: int
    disabled: bool
    last_error: str | None


StatisticsProvider = Callable[[], tuple[SinkStatistics, ...]]


class _Lane:
    """One sink's channel, task and counters."""

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.name = spec.sink.name
        self.send, self.receive = anyio.create_memory_object_stream[Item](spec.buffer.max_items)
        self.scope = anyio.CancelScope(shield=True)
        self.backlogged = anyio.Event()
        """Set when a producer finds the buffer full: a lingering sink must write now, not later."""
        self.written = 0
        self.in_flight = 0
        self.dropped = 0
        self.errors = 0
        self.disabled = False
        self.last_error: str | None = None

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(
            name=self.name,
            queued=self.send.statistics().current_buffer_used,
            max_items=self.spec.buffer.max_items,
            written=self.written,
            dropped=self.dropped,
            errors=self.errors,
            disabled=self.disabled,
            last_error=self.last_error,
        )

    async def offer_when_full(self, item: Item) -> None:
        policy = self.spec.buffer.on_full
        if policy is OnFull.BLOCK:
            await self.send.send(item)
        elif policy is OnFull.DROP_NEWEST:
            self.dropped += 1
        else:
            try:
                self.receive.receive_nowait()
                self.dropped += 1
            except anyio.WouldBlock:
                pass
            self.send.send_nowait(item)

    def next_batch(self, first: Item) -> list[Item]:
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self.receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch


class FanOut:
    """Delivers every item to every sink under backpressure; see the module docstring.

    Use as ``async with FanOut(specs) as fanout: await fanout.send(item)``. On exit the lanes are
    closed, every sink drains what it holds, flushes and closes. A sink that failed under
    ``on_error = "fail"`` sets :attr:`failed`; its error is raised on exit after the others flushed.
    """

    def __init__(self, specs: Sequence[SinkSpec], *, flush_timeout: float = 30.0) -> None:
        names = [spec.sink.name for spec in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"sink names must differ, got {names!r}")
        self._lanes = [_Lane(spec) for spec in specs]
        self._flush_timeout = flush_timeout
        self._task_group: TaskGroup | None = None
        self.failed = anyio.Event()
        self.failure: SinkError | None = None
        for spec in specs:
            observe = getattr(spec.sink, "observe_fanout", None)
            if observe is not None:
                observe(self.statistics)

    def statistics(self) -> tuple[SinkStatistics, ...]:
        """Every sink's lane as it is now: queue depth, counts, state."""
        return tuple(lane.statistics() for lane in self._lanes)

    async def send(self, item: Item) -> None:
        """Offers the item to every live sink, waiting only where a ``block`` buffer is full."""
        for lane in self._lanes:
            if lane.disabled:
                continue
            try:
                lane.send.send_nowait(item)
            except anyio.WouldBlock:
                lane.backlogged.set()
                await lane.offer_when_full(item)

    async def __aenter__(self) -> Self:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            for lane in self._lanes:
                await self._task_group.start(self._run_lane, lane)
        except BaseException as exc:
            await self._close(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close(exc_type, exc, tb)
        if self.failure is not None and exc_type is None:
            raise self.failure

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        deadline = anyio.current_time() + self._flush_timeout
        for lane in self._lanes:
            lane.send.close()
            lane.scope.deadline = min(lane.scope.deadline, deadline)
        assert self._task_group is not None
        if isinstance(exc, Exception) and not isinstance(exc, anyio.get_cancelled_exc_class()):
            # The lanes flush all the same (shielded, bounded by the deadline); the caller's error
            # reaches it as itself, not wrapped in this task group's ExceptionGroup.
            await self._task_group.__aexit__(None, None, None)
        else:
            await self._task_group.__aexit__(exc_type, exc, tb)

    async def _run_lane(self, lane: _Lane, *, task_status: TaskStatus[None]) -> None:
        started = False
        with lane.scope:
            try:
                async with lane.spec.sink:
                    task_status.started()
                    started = True
                    await self._drain(lane)
            except Exception as exc:
                if isinstance(exc, ConfigError) and not started:
                    raise  # it cannot open as configured (a busy port): refused before any request, exit 2
                self._sink_failed(lane, exc)
        if lane.scope.cancelled_caught:
            self._sink_failed(lane, TimeoutError(f"flush did not finish within {self._flush_timeout} s"))
        if not started:
            task_status.started()
        async with lane.receive:
            async for _ in lane.receive:
                lane.dropped += 1

    async def _drain(self, lane: _Lane) -> None:
        linger = lane.spec.effective_linger()
        async for first in lane.receive:
            if linger > 0:
                with anyio.move_on_after(linger):
                    await lane.backlogged.wait()
                lane.backlogged = anyio.Event()
            batch = lane.next_batch(first)
            lane.in_flight = len(batch)
            await lane.spec.sink.write(batch)
            lane.in_flight = 0
            lane.written += len(batch)

    def _sink_failed(self, lane: _Lane, exc: Exception) -> None:
        lane.dropped += lane.in_flight
        lane.in_flight = 0
        lane.errors += 1
        lane.disabled = True
        lane.last_error = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
        if lane.spec.on_error is OnError.FAIL and self.failure is None:
            if isinstance(exc, SinkError):
                self.failure = exc
            else:
                self.failure = SinkError(lane.name, lane.last_error)
                self.failure.__cause__ = exc
            self.failed.set()
