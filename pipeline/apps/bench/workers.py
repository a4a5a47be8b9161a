"""``--workers W``: the client spread over W processes, each with its own event loop.

One Python event loop tops out at some thousands of events a second; past that, responses wait
for the loop and the wait lands in TTFT. Each worker warms up its share, reports ready, and starts
at one common ``perf_counter_ns`` instant (one clock machine-wide), so the open loop's schedule is
the single planned schedule dealt out round-robin. Workers ignore SIGINT: the parent catches it and
sets a shared event, so each worker stops cleanly and still returns what completed. Records come
back whole and are merged, so percentiles are computed over every sample, never averaged.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import anyio
import anyio.to_thread

from pipeline.apps.bench.measure import Stopper, WorkerOutput, WorkerPlan, run_worker
from pipeline.apps.bench.progress import SLOTS
from pipeline.errors import RilletError

START_LEAD_NS = 20_000_000
"""The common start is this far after the last worker reported ready, so all see it ahead."""

POLL = 0.05
"""How often a worker looks at the parent's stop event: Ctrl-C is obeyed within this."""


class _Counters:
    """A worker's progress slots inside the shared array."""

    def __init__(self, shared: Any, offset: int) -> None:
        self._shared = shared
        self._offset = offset

    def __getitem__(self, index: int) -> int:
        return int(self._shared[self._offset + index])

    def __setitem__(self, index: int, value: int) -> None:
        self._shared[self._offset + index] = value


def _main(plan: WorkerPlan, conn: Connection, stop: Any, shared: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    output = anyio.run(_serve, plan, conn, stop, _Counters(shared, SLOTS * plan.worker))
    conn.send(output)
    conn.close()


async def _serve(plan: WorkerPlan, conn: Connection, stop: Any, counters: _Counters) -> WorkerOutput:
    stopper = Stopper()

    async def ready() -> int:
        conn.send("ready")
        start: int = await anyio.to_thread.run_sync(conn.recv)
        return start

    async def watch() -> None:
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing Event cannot be awaited
            await anyio.sleep(POLL)
        stopper.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        output = await run_worker(plan, stopper=stopper, progress=counters, ready=ready)
        tg.cancel_scope.cancel()
    return output


async def _receive(conn: Connection, worker: int) -> Any:
    try:
        return await anyio.to_thread.run_sync(conn.recv)
    except EOFError:
        raise RilletError(f"bench worker {worker} exited without its results; see its error above") from None


async def run_workers(plans: Sequence[WorkerPlan], stopper: Stopper, shared: Any) -> list[WorkerOutput]:
    """Runs each plan in its own process; returns every worker's output once all have finished."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    processes, conns = [], []
    for plan in plans:
        parent, child = context.Pipe()
        process = context.Process(target=_main, args=(plan, child, stop, shared), daemon=True)
        process.start()
        child.close()
        processes.append(process)
        conns.append(parent)

    async def relay() -> None:
        await stopper.event.wait()
        stop.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay)
            for worker, conn in enumerate(conns):
                await _receive(conn, worker)
            start_ns = time.perf_counter_ns() + START_LEAD_NS
            for conn in conns:
                conn.send(start_ns)
            outputs = [await _receive(conn, worker) for worker, conn in enumerate(conns)]
            tg.cancel_scope.cancel()
    finally:
        stop.set()
        for process in processes:
            await anyio.to_thread.run_sync(process.join, 10.0)
            if process.is_alive():
                process.kill()
        for conn in conns:
            conn.close()
    return outputs


def shared_counters(workers: int) -> Any:
    """Progress slots per worker, written by the workers, read by the parent's progress display."""
    return multiprocessing.get_context("spawn").Array("q", SLOTS * workers, lock=False)
