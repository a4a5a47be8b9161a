"""Load generators: a closed loop at a fixed concurrency, an open loop on an absolute clock.

Both hand each send to ``send(dispatch)`` and never look at its result, so a slow server cannot
slow the open loop down: arrivals are due at ``start + offset`` whatever happened before, a late
wake-up is measured (``released_ns - scheduled_ns``) and never pushes later arrivals back. Arrivals
already due are started together, without a yield between them, so a burst is one burst.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One send as the load generator made it; see :class:`~pipeline.apps.bench.record.RequestRecord`."""

    index: int
    released_ns: int
    slot_ns: int
    scheduled_ns: int | None = None


Send = Callable[[Dispatch], Awaitable[None]]


class Budget:
    """Hands out request indices until a count, a duration or :meth:`stop` ends the point.

    The first ``warmup`` indices are negative: warm-up requests of the same loop, excluded from the
    results, so measuring starts in the loop's steady state rather than in its first burst. The
    duration runs from the first measured request.
    """

    def __init__(
        self,
        count: int | None,
        duration: float | None = None,
        *,
        warmup: int = 0,
        first_index: int = 0,
        step: int = 1,
    ) -> None:
        self._left = math.inf if count is None else count
        self._duration_ns = None if duration is None else round(duration * 1e9)
        self.deadline_ns: int | None = None
        self._warmup = warmup
        self._next = first_index
        self._step = step
        self.stopped = False
        self.cancelled = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def start(self, now_ns: int) -> None:
        """Starts the duration's clock (open loop: at the schedule's start)."""
        if self._duration_ns is not None and self.deadline_ns is None:
            self.deadline_ns = now_ns + self._duration_ns

    def take(self) -> int | None:
        """The next index (negative for warm-up), or None when the point is over."""
        if self.stopped:
            return None
        if self._warmup > 0:
            self._warmup -= 1
            return -1 - self._warmup
        now = time.perf_counter_ns()
        self.start(now)
        if self._left <= 0 or (self.deadline_ns is not None and now >= self.deadline_ns):
            return None
        self._left -= 1
        index, self._next = self._next, self._next + self._step
        return index

    def stop(self) -> None:
        """No more sends; the requests in flight now are counted as cancelled."""
        self.stopped = True
        self.cancelled = self.in_flight

    async def track(self, send: Send, dispatch: Dispatch) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await send(dispatch)
        finally:
            self.in_flight -= 1


async def closed_loop(send: Send, concurrency: int, budget: Budget) -> None:
    """``concurrency`` senders, each sending its next request as soon as its last one ended."""

    async def sender() -> None:
        while (index := budget.take()) is not None:
            now = time.perf_counter_ns()
            await budget.track(send, Dispatch(index, now, now))

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(sender)


async def open_loop(
    send: Send,
    offsets: Iterable[float],
    start_ns: int,
    budget: Budget,
    max_concurrency: int | None = None,
) -> None:
    """A send at ``start_ns + offset`` for each offset, capped at ``max_concurrency`` in flight."""
    limiter = anyio.CapacityLimiter(max_concurrency) if max_concurrency else None

    async def one(index: int, scheduled_ns: int, released_ns: int) -> None:
        if limiter is None:
            await budget.track(send, Dispatch(index, released_ns, released_ns, scheduled_ns))
            return
        async with limiter:
            dispatch = Dispatch(index, released_ns, time.perf_counter_ns(), scheduled_ns)
            await budget.track(send, dispatch)

    budget.start(start_ns)
    async with anyio.create_task_group() as tg:
        for offset in offsets:
            scheduled_ns = start_ns + round(offset * 1e9)
            if budget.deadline_ns is not None and scheduled_ns >= budget.deadline_ns:
                break
            delay = (scheduled_ns - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await anyio.sleep(delay)
            index = budget.take()
            if index is None:
                break
            tg.start_soon(one, index, scheduled_ns, time.perf_counter_ns())
