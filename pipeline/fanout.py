"""Fan-out: every sink gets its own bounded channel and task, and its own policies.

The stage chain offers each item to every sink without yielding when there is room,
so a sink's task wakes up to a batch, not an item: the file sink needs that, one aiofiles call costing
about 100 µs. A full buffer applies the sink's :class:`~pipeline.sink.OnFull` policy. A sink's task
runs shielded from cancellation so that Ctrl-C still flushes what was received, bounded in time by
``flush_timeout`` once the fan-out closes.
"""

from __future__ import annotations

from collections import deque
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
    """One sink's bounded queue, task and counters.

    A plain deque rather than a memory object stream: a stream's ``send_nowait`` costs about 5 µs
    an item, and a producer blocked on a full one is woken one item at a time. Here a stream's
    items go in as one batch, a blocked producer waits once for it, and when the sink's task
    takes its next batch it wakes as many waiting producers as there is room for, not all.
    """

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.name = spec.sink.name
        self.max_items = spec.buffer.max_items
        self.queue: deque[Item] = deque()
        self.closed = False
        self._ready = anyio.Event()
        self._reader_waiting = False
        self._waiting: deque[anyio.Event] = deque()
        """Producers held by a full ``block`` buffer, first come first served."""
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
            queued=len(self.queue),
            max_items=self.max_items,
            written=self.written,
            dropped=self.dropped,
            errors=self.errors,
            disabled=self.disabled,
            last_error=self.last_error,
        )

    async def offer(self, items: Sequence[Item]) -> None:
        """Queues the items, applying the lane's :class:`OnFull` policy to those that do not fit."""
        if self.closed:
            raise anyio.ClosedResourceError  # as a closed memory stream would: never lost unseen
        queue = self.queue
        index, count = 0, len(items)
        while index < count:
            room = self.max_items - len(queue)
            if room > 0:
                queue.extend(items[index : index + room] if index or room < count else items)
                index += room
                if self._reader_waiting:
                    self._reader_waiting = False
                    self._ready.set()
                continue
            self.backlogged.set()
            policy = self.spec.buffer.on_full
            if policy is OnFull.BLOCK:
                await self._wait_for_room()
                if self.disabled:
                    self.dropped += count - index  # offered while it was live: counted, as queued ones are
                    return
            elif policy is OnFull.DROP_NEWEST:
                self.dropped += count - index
                return
            else:
                queue.popleft()
                self.dropped += 1
                queue.append(items[index])
                index += 1

    async def _wait_for_room(self) -> None:
        room = anyio.Event()
        self._waiting.append(room)
        try:
            await room.wait()
        except BaseException:
            if room.is_set():
                self.wake(1)  # cancelled as it was let in: the next one takes its turn
            else:
                self._waiting.remove(room)
            raise

    def wake(self, count: int | None = None) -> None:
        """Lets the first ``count`` producers waiting for room go on (each needs at least one
        slot), or every one of them."""
        waiting = self._waiting
        for _ in range(len(waiting) if count is None else min(count, len(waiting))):
            waiting.popleft().set()

    async def wait_items(self) -> bool:
        """Waits until the queue holds an item: True, or False once it is closed and empty."""
        while not self.queue:
            if self.closed:
                return False
            self._ready = anyio.Event()
            self._reader_waiting = True
            try:
                await self._ready.wait()
            finally:
                self._reader_waiting = False
        return True

    def take(self) -> list[Item]:
        """The next batch, at most :data:`MAX_BATCH` items; the producers waiting for room go on."""
        queue = self.queue
        if len(queue) <= MAX_BATCH:
            batch = list(queue)
            queue.clear()
        else:
            batch = [queue.popleft() for _ in range(MAX_BATCH)]
        self.wake(None if self.disabled else self.max_items - len(queue))
        return batch

    def close(self) -> None:
        """No more items will come: the sink's task takes what is queued, then ends."""
        self.closed = True
        self._ready.set()


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
        await self.send_many((item,))

    async def send_many(self, items: Sequence[Item]) -> None:
        """Offers the items, in order, to every live sink; one wait per full ``block`` buffer."""
        for lane in self._lanes:
            if not lane.disabled:
                await lane.offer(items)

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
            lane.close()
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
        while await lane.wait_items():
            lane.dropped += len(lane.take())

    async def _drain(self, lane: _Lane) -> None:
        linger = lane.spec.effective_linger()
        while await lane.wait_items():
            if linger > 0:
                with anyio.move_on_after(linger):
                    await lane.backlogged.wait()
                lane.backlogged = anyio.Event()
            batch = lane.take()
            lane.in_flight = len(batch)
            await lane.spec.sink.write(batch)
            lane.in_flight = 0
            lane.written += len(batch)

    def _sink_failed(self, lane: _Lane, exc: Exception) -> None:
        lane.dropped += lane.in_flight
        lane.in_flight = 0
        lane.errors += 1
        lane.disabled = True
        lane.wake()  # no producer waits on a disabled lane
        lane.last_error = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
        if lane.spec.on_error is OnError.FAIL and self.failure is None:
            if isinstance(exc, SinkError):
                self.failure = exc
            else:
                self.failure = SinkError(lane.name, lane.last_error)
                self.failure.__cause__ = exc
            self.failed.set()
