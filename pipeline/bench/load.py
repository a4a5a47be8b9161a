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
    """One send as the load generator made it; see :class:`~pipeline.bench.record.RequestRecord`."""

    index: int
    released_ns: int
    slot_ns: int
    scheduled_ns: int | None = None


Send = Callable[[Dispatch], Awaitable[None]]


class Budget:
    """Hands out request indices until a count, a deadline or :meth:`stop` ends the point."""

    def __init__(
        self, count: int | None, deadline_ns: int | None, first_index: int = 0, step: int = 1
    ) -> None:
        self._left = math.inf if count is None else count
        self.deadline_ns = deadline_ns
        self._next = first_index
        self._step = step
        self.stopped = False
        self.cancelled = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    def take(self) -> int | None:
        """The next index, or None when the point is over."""
        if self.stopped or self._left <= 0:
            return None
        if self.deadline_ns is not None and time.perf_counter_ns() >= self.deadline_ns:
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
