"""``rillet bench`` end to end: estimate, refuse or start, run each point, check the truth, report.

Ctrl-C (or SIGTERM) stops sending, cancels what is in flight, and still reports and writes every
request that completed; the exit status is then 130.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio

from pipeline.apps.bench.console import summary
from pipeline.apps.bench.estimate import Estimate, estimate_cost
from pipeline.apps.bench.files import SavedRun, finite, write_json, write_result_dir, write_text
from pipeline.apps.bench.measure import Stopper, WorkerOutput, WorkerPlan, run_worker
from pipeline.apps.bench.progress import new_counters, show_progress
from pipeline.apps.bench.results import PointRun, point_result
from pipeline.apps.bench.settings import BenchConfig
from pipeline.apps.bench.truth import check_truth
from pipeline.apps.bench.workers import run_workers, shared_counters
from pipeline.apps.bench.workload import Workload, load_prompts
from pipeline.apps.shared.endpoint import Endpoint, open_endpoint
from pipeline.apps.simulator import SimulatorSettings
from pipeline.errors import ConfigError
from pipeline.sink import SinkSpec

INTERRUPTED = 130


@dataclass(slots=True)
class BenchReport:
    """What an invocation produced: one result and one run per point that started."""

    results: list[dict[str, Any]] = field(default_factory=list)
    runs: list[PointRun] = field(default_factory=list)
    estimate: Estimate | None = None
    interrupted: bool = False

    @property
    def status(self) -> int:
        return INTERRUPTED if self.interrupted else 0


def build_workload(settings: BenchConfig) -> Workload:
    return Workload(
        model=settings.model,
        max_tokens=settings.output_tokens,
        input_tokens=settings.input_tokens,
        input_tokens_sd=settings.input_tokens_sd,
        seed=settings.seed,
        prompts=load_prompts(settings.prompts) if settings.prompts is not None else (),
    )


def check_budget(settings: BenchConfig, estimate: Estimate) -> None:
    """``--max-cost``: refuse a run whose estimate exceeds it, or cannot be made."""
    limit = settings.max_cost
    if limit is None:
        return
    if estimate.usd is None:
        raise ConfigError(
            f"--max-cost {limit}: the cost of a duration-bounded closed loop cannot be estimated; "
            "give --num-requests or --request-rate"
        )
    if math.isnan(estimate.usd):
        raise ConfigError(f"--max-cost {limit}: genai-prices has no price for model {settings.model!r}")
    if estimate.usd > limit:
        raise ConfigError(
            f"estimated cost ${estimate.usd:.4f} exceeds --max-cost ${limit:.4f}; "
            "lower --num-requests, --output-tokens or --input-tokens, or raise --max-cost"
        )


def simulator_settings(settings: BenchConfig) -> SimulatorSettings:
    sim = settings.simulator
    try:
        return SimulatorSettings(
            scenario=sim.scenario,
            ttft_ms=sim.ttft_ms,
            tokens_per_s=sim.tokens_per_s,
            jitter=sim.jitter,
            seed=sim.seed,
        )
    except ValueError as exc:
        raise ConfigError(f"bench.simulator: {exc}") from None


async def run_bench(
    settings: BenchConfig,
    *,
    base_url: str | None = None,
    sinks: Sequence[SinkSpec] = (),
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> BenchReport:
    """Runs every point of ``settings``; writes the requested files even when interrupted."""
    if sinks and settings.workers > 1:
        raise ConfigError("extra sinks (such as metrics) need --workers 1: each worker is its own process")
    workload = build_workload(settings)
    estimate = estimate_cost(settings, workload)
    check_budget(settings, estimate)
    print(_estimate_line(settings, estimate), file=err)
    report = BenchReport(estimate=estimate)
    stopper = Stopper()
    async with open_endpoint(base_url, simulator=simulator_settings(settings)) as endpoint:
        truth = endpoint.simulated if settings.truth is None else settings.truth
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, stopper, report)
            for number, point in enumerate(settings.points):
                if report.interrupted:
                    break
                run = await _run_point(settings, workload, endpoint, point, stopper, sinks, err)
                run.estimated_cost_usd = estimate.per_point[number]
                run.interrupted = report.interrupted
                if truth and endpoint.base_url and run.records:
                    run.truth = await check_truth(endpoint.base_url, run.records)
                result = point_result(run, settings, simulated=endpoint.simulated)
                report.runs.append(run)
                report.results.append(result)
                print(summary(result), file=out)
                out.flush()
            tg.cancel_scope.cancel()
    if len(report.results) > 1:  # a sweep ends with one table over its points
        from pipeline.apps.bench.tables import report as table

        table([SavedRun(settings.label or settings.model, report.results)], out)
    write_outputs(settings, report)
    return report


def _estimate_line(settings: BenchConfig, estimate: Estimate) -> str:
    if estimate.usd is None:
        return "rillet bench: cost estimate unavailable (a duration-bounded closed loop); no --max-cost guard"
    usd = "unknown (no price for this model)" if math.isnan(estimate.usd) else f"${estimate.usd:.4f}"
    return (
        f"rillet bench: estimated cost {usd} for {estimate.requests:,.0f} requests of {settings.model} "
        f"at up to {settings.output_tokens} output tokens (warm-up included)"
    )


async def _stop_on_signal(stopper: Stopper, report: BenchReport) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            report.interrupted = True
            stopper.stop()
            return


async def _run_point(
    settings: BenchConfig,
    workload: Workload,
    endpoint: Endpoint,
    point: float,
    stopper: Stopper,
    sinks: Sequence[SinkSpec],
    err: TextIO,
) -> PointRun:
    mode = "request_rate" if settings.open_loop else "concurrency"
    workers = settings.workers if settings.open_loop else min(settings.workers, int(point))
    plans = [
        WorkerPlan(settings, workload, endpoint.base_url, endpoint.api_key, point, worker, workers)
        for worker in range(workers)
    ]
    counters: Any = shared_counters(workers) if workers > 1 else new_counters()
    label = f"{mode.replace('_', ' ')} {point:g}"
    start: list[int] = []

    async def ready() -> int:
        start.append(time.perf_counter_ns())
        return start[0]

    async with anyio.create_task_group() as tg:
        if settings.progress != "off":  # a bar on a terminal, plain lines elsewhere
            planned, duration = settings.requests_per_point, settings.duration
            tg.start_soon(show_progress, err, label, counters, workers, planned, duration)
        if workers == 1:
            outputs: list[WorkerOutput] = [
                await run_worker(plans[0], stopper=stopper, progress=counters, ready=ready, sinks=sinks)
            ]
        else:
            outputs = await run_workers(plans, stopper, counters)
        tg.cancel_scope.cancel()
    records = sorted((r for o in outputs for r in o.records), key=lambda r: r.released_ns)
    # An open loop starts with its schedule; a closed loop with its first measured request, after
    # the warm-up requests of the same loop.
    clock = start if settings.open_loop else []
    started = min([*clock, *(r.scheduled_ns or r.released_ns for r in records)], default=0)
    return PointRun(
        mode=mode,
        value=point,
        started_ns=started,
        records=records,
        loop_lag=[lag for o in outputs for lag in o.loop_lag],
        peak_rss_bytes=[o.peak_rss_bytes for o in outputs],
        cancelled=sum(o.cancelled for o in outputs),
        warmup=settings.warmup_for(point),
    )


def write_outputs(settings: BenchConfig, report: BenchReport) -> None:
    """The result files (``--result-json``, ``--result-dir``), the per-request JSONL, the plot."""
    if settings.result_json is not None and report.results:
        data: Any = report.results[0] if len(settings.points) == 1 else report.results
        write_json(settings.result_json, data)
    if (settings.result_dir is not None or settings.save_result) and report.results:
        write_result_dir(settings, report.results)
    if settings.save_requests is not None:
        lines = [
            json.dumps(finite({"point": run.value, **r.to_json()}), allow_nan=False)
            for run in report.runs
            for r in run.records
        ]
        write_text(settings.save_requests, "".join(line + "\n" for line in lines))
    if settings.plot is not None and report.runs:
        from pipeline.apps.bench.plot import plot

        run = SavedRun(settings.label or settings.model, report.results)
        plot([run], settings.plot, zoom=settings.zoom)
