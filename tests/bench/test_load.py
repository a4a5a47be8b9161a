"""Load generators: a closed loop never exceeds its concurrency; an open loop keeps its schedule."""

from __future__ import annotations

import random
import time

import anyio
import anyio.lowlevel
import pytest

from pipeline.apps.bench.arrivals import arrival_offsets
from pipeline.apps.bench.load import Budget, Dispatch, closed_loop, open_loop

pytestmark = pytest.mark.anyio


class Server:
    """Counts requests in flight; each takes a random number of loop turns, or a fixed delay."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.dispatches: list[Dispatch] = []
        self.first_done_ns: int | None = None
        self.rng = random.Random(1)

    async def send(self, dispatch: Dispatch) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.dispatches.append(dispatch)
        if self.delay:
            await anyio.sleep(self.delay)
        else:
            for _ in range(self.rng.randint(0, 20)):
                await anyio.lowlevel.checkpoint()
        self.in_flight -= 1
        if self.first_done_ns is None:
            self.first_done_ns = time.perf_counter_ns()


@pytest.mark.parametrize("concurrency", [1, 7, 64])
async def test_closed_loop_never_exceeds_its_concurrency(concurrency: int) -> None:
    """At most C requests in flight, and exactly C once the loop is full."""
    server = Server()
    budget = Budget(500)
    await closed_loop(server.send, concurrency, budget)
    assert len(server.dispatches) == 500
    assert server.peak == concurrency == budget.peak_in_flight
    assert sorted(d.index for d in server.dispatches) == list(range(500))


async def test_warmup_indices_come_first_and_are_negative() -> None:
    """Warm-up requests of the same loop are marked by negative indices and not counted."""
    server = Server()
    await closed_loop(server.send, 4, Budget(10, warmup=4))
    indices = [d.index for d in server.dispatches]
    assert indices[:4] == [-4, -3, -2, -1]
    assert sorted(indices[4:]) == list(range(10))


async def test_open_loop_keeps_its_rate_when_the_server_is_slow() -> None:
    """Every send goes out on schedule though no response comes back during the schedule."""
    server = Server(delay=1.5)
    rate, count = 100.0, 60
    start = time.perf_counter_ns() + 10_000_000
    budget = Budget(count)
    await open_loop(server.send, arrival_offsets(rate, seed=2), start, budget)
    assert len(server.dispatches) == count
    assert server.peak == count
    assert server.first_done_ns is not None
    assert max(d.released_ns for d in server.dispatches) < server.first_done_ns
    for dispatch in server.dispatches:
        assert dispatch.scheduled_ns is not None
        assert dispatch.released_ns >= dispatch.scheduled_ns
    planned = [d.scheduled_ns or 0 for d in server.dispatches]
    released = [d.released_ns for d in server.dispatches]
    planned_span, released_span = max(planned) - min(planned), max(released) - min(released)
    assert released_span == pytest.approx(planned_span, rel=0.2)


async def test_open_loop_cap_is_waited_for_apart_from_the_request() -> None:
    """With a concurrency cap, the wait for a slot is stamped, not hidden in the send."""
    server = Server(delay=0.05)
    budget = Budget(12)
    await open_loop(server.send, arrival_offsets(float("inf")), time.perf_counter_ns(), budget, 3)
    assert server.peak == 3
    waits = sorted(d.slot_ns - d.released_ns for d in server.dispatches)
    assert waits[-1] >= 3 * 40_000_000


async def test_stop_ends_the_loop_and_counts_what_was_in_flight() -> None:
    """``stop`` lets no new request out; in-flight ones are counted as cancelled."""
    server = Server()
    budget = Budget(None)

    async def send(dispatch: Dispatch) -> None:
        if dispatch.index == 100:
            budget.stop()
        await server.send(dispatch)

    await closed_loop(send, 5, budget)
    assert 100 <= len(server.dispatches) <= 105
    assert budget.cancelled >= 1
