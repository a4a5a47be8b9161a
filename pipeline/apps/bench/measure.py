"""One process's share of a point: warm up, wait for the common start, send, record.

A closed loop's warm-up is its own first requests (excluded), so measuring starts once the first
burst has spread out; an open loop warms up with short requests before its clock starts, so its
schedule begins with open connections. Then ``gc.freeze()``: the SDK, pydantic and the price
tables leave about a million long-lived objects, and a full collection walking them stalls the
loop for tens of milliseconds inside whichever request's TTFT was waiting.

Requests go through the library's own :class:`~pipeline.runner.Pipeline` with the latency and
cost stages, so the bench measures exactly what every rillet run measures. The source's resume is
off (:data:`NO_RESUME`). Requests are dealt round-robin over several SDK clients
(:data:`CONNECTIONS_PER_CLIENT`): httpcore's pool checks every idle connection it holds, a
``poll`` system call each, whenever a request starts or ends, so one pool of 256 connections
costs about 4 ms of client CPU per request in a burst, all of it inside TTFT.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import httpx2

from pipeline.apps.bench.arrivals import arrival_offsets
from pipeline.apps.bench.load import Budget, Dispatch, closed_loop, open_loop
from pipeline.apps.bench.looplag import LoopLagSampler, peak_rss_bytes
from pipeline.apps.bench.progress import Counters, count, new_counters
from pipeline.apps.bench.record import RecordStage, RequestRecord, build_record
from pipeline.apps.bench.settings import BenchConfig
from pipeline.apps.bench.workload import Workload
from pipeline.client import make_client
from pipeline.runner import Pipeline
from pipeline.sink import SinkSpec
from pipeline.source.resume import ResumeSettings
from pipeline.source.stream import Source
from pipeline.stages.cost import CostStage
from pipeline.stages.latency import LatencyStage
from pipeline.wire.reader import prompt_reading, shared_reader

NO_RESUME = ResumeSettings(mode="off", max_attempts=1)
"""A benchmark reports a failure as a failure: no retry hides it in a slower success."""

WARMUP_MAX_TOKENS = 16
"""Warm-up requests only open connections and wake the path: a few tokens are enough."""

CONNECTIONS_PER_CLIENT = 4
"""Connections each client's pool is meant to carry, so a pool pass stays short."""

MAX_CLIENTS = 64
"""An uncapped open loop's 10,000 slots need not make 625 clients: their in-flight count is lower."""


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What one worker process needs to run its share of a point; picklable."""

    settings: BenchConfig
    workload: Workload
    base_url: str | None
    api_key: str | None
    point: float
    worker: int = 0
    workers: int = 1

    def share(self, total: int) -> int:
        """This worker's part of ``total`` (slots, requests), the remainder to the first ones."""
        return total // self.workers + (1 if self.worker < total % self.workers else 0)


@dataclass(slots=True)
class WorkerOutput:
    records: list[RequestRecord] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)
    peak_rss_bytes: int = 0
    cancelled: int = 0


class Stopper:
    """Set by Ctrl-C (or the parent process): stop sending, cancel what is in flight."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def stop(self) -> None:
        self.event.set()


Ready = Callable[[], Awaitable[int]]
"""Called after the warm-up; returns the common start, in ``perf_counter_ns``."""


async def _start_now() -> int:
    return time.perf_counter_ns()


async def run_worker(
    plan: WorkerPlan,
    *,
    stopper: Stopper,
    progress: Counters | None = None,
    ready: Ready = _start_now,
    sinks: Sequence[SinkSpec] = (),
) -> WorkerOutput:
    """Runs this worker's share of the point; on stop, returns what completed."""
    settings, workload = plan.settings, plan.workload
    slots = max(1, plan.share(settings.slots(plan.point)))
    ssl_context = httpx2.create_ssl_context()
    reader = shared_reader() if settings.wire else None
    clients = [
        # Each pool may still grow to every slot: round-robin spreads requests, never queues them.
        make_client(
            api_key=plan.api_key,
            base_url=plan.base_url,
            max_connections=slots,
            ssl_context=ssl_context,
            wire=settings.wire,
            wire_reader=reader,
        )
        for _ in range(min(MAX_CLIENTS, -(-slots // CONNECTIONS_PER_CLIENT)))
    ]
    out = WorkerOutput()
    counters: Counters = progress if progress is not None else new_counters()
    stages = [LatencyStage, CostStage, RecordStage]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        pipeline = await stack.enter_async_context(Pipeline(clients[0], stages=stages, sinks=sinks))
        deal = itertools.cycle(clients)

        async def send(dispatch: Dispatch, *, max_tokens: int | None = None) -> RequestRecord:
            request = workload.request(dispatch.index, max_tokens=max_tokens)
            stream = pipeline.stream(request)
            client = next(deal)
            source = Source(client, stream.request, stream.stream_id, resume=NO_RESUME)
            result = await stream.run(source, pipeline.fanout)
            stage = next(s for s in stream.stages if isinstance(s, RecordStage))
            return build_record(
                result,
                stage,
                index=dispatch.index,
                worker=plan.worker,
                max_tokens=request["max_tokens"],
                start_ns=stream.context.started_ns,
                end_ns=time.perf_counter_ns(),
                released_ns=dispatch.released_ns,
                slot_ns=dispatch.slot_ns,
                scheduled_ns=dispatch.scheduled_ns,
            )

        async def measured(dispatch: Dispatch) -> None:
            record = await send(dispatch)
            if dispatch.index >= 0:
                out.records.append(record)
                count(counters, record.ok, record.ttft)

        async def warm(dispatch: Dispatch) -> None:
            await send(dispatch, max_tokens=WARMUP_MAX_TOKENS)

        warmup = plan.share(settings.warmup_for(plan.point))
        if warmup and settings.open_loop:
            await closed_loop(warm, min(warmup, slots), Budget(0, warmup=warmup))
        gc.freeze()
        start_ns = await ready()
        sampler = LoopLagSampler()
        budget = _budget(plan, 0 if settings.open_loop else warmup)
        with prompt_reading():
            async with anyio.create_task_group() as tg:
                tg.start_soon(sampler.run)
                tg.start_soon(_stop_on, stopper, budget, tg.cancel_scope)
                await _load(plan, measured, budget, start_ns)
                tg.cancel_scope.cancel()
        gc.unfreeze()
    out.cancelled = budget.cancelled
    out.loop_lag = list(sampler.samples)
    out.peak_rss_bytes = peak_rss_bytes()
    return out


def _budget(plan: WorkerPlan, warmup: int) -> Budget:
    settings = plan.settings
    total = settings.requests_per_point
    count = None if total is None else plan.share(total)
    return Budget(count, settings.duration, warmup=warmup, first_index=plan.worker, step=plan.workers)


async def _load(
    plan: WorkerPlan, send: Callable[[Dispatch], Awaitable[None]], budget: Budget, start_ns: int
) -> None:
    settings = plan.settings
    if not settings.open_loop:
        await closed_loop(send, plan.share(int(plan.point)), budget)
        return
    every = arrival_offsets(plan.point, settings.burstiness, settings.seed)
    mine = itertools.islice(every, plan.worker, None, plan.workers)
    cap = settings.max_concurrency
    await open_loop(send, mine, start_ns, budget, None if cap is None else max(1, plan.share(cap)))


async def _stop_on(stopper: Stopper, budget: Budget, scope: anyio.CancelScope) -> None:
    await stopper.event.wait()
    budget.stop()
    scope.cancel()


def expected_requests(settings: BenchConfig, point: float) -> float | None:
    """Measured requests a point will send, for the cost estimate; None when nobody can tell."""
    if settings.requests_per_point is not None:
        return settings.requests_per_point
    assert settings.duration is not None
    if settings.open_loop and not math.isinf(point):
        return point * settings.duration
    return None
