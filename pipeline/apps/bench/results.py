"""From a point's request records to its result: vLLM's keys first, then rillet's own.

vLLM's definitions hold for its keys (``reference/metrics.md``): TTFT, TPOT, ITL and E2E over
completed requests only, ITL per token (each chunk gap divided over the chunk's tokens, one sample
per token, as vLLM's one-token chunks give it) and the raw per-chunk gaps under ``chunk_gap``,
goodput the completed requests per second meeting every SLO (a request of one output token has
TPOT 0 there, as in vLLM). ``max_output_tokens_per_s`` is vLLM's: the most output tokens that
arrived within one second of the point, counted in whole seconds from its first request's start.
``max_concurrent_requests`` is the exact peak of overlapping requests, not vLLM's per-second
buckets, which count two requests that share a second but never overlap.
"""

from __future__ import annotations

import itertools
import math
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import anthropic

from pipeline.apps.bench.record import RequestRecord
from pipeline.apps.bench.settings import BenchConfig
from pipeline.apps.bench.stats import Summary, mean_overlap, peak_overlap, percentile_label
from pipeline.apps.bench.truth import TruthCheck
from pipeline.client_delay import ClientDelay

BACKEND = "anthropic-messages"


@dataclass(slots=True)
class PointRun:
    """One point of a sweep as run: its records and what the client measured about itself."""

    mode: str
    """``concurrency`` (closed loop) or ``request_rate`` (open loop)."""
    value: float
    started_ns: int
    records: list[RequestRecord]
    loop_lag: list[float] = field(default_factory=list)
    peak_rss_bytes: list[int] = field(default_factory=list)
    """One figure per worker process."""
    cancelled: int = 0
    warmup: int = 0
    interrupted: bool = False
    estimated_cost_usd: float | None = None
    truth: TruthCheck | None = None


def versions() -> dict[str, str]:
    try:
        rillet = metadata.version("rillet")
    except metadata.PackageNotFoundError:
        rillet = "unknown"
    return {
        "rillet_version": rillet,
        "sdk_version": anthropic.__version__,
        "python_version": platform.python_version(),
    }


def point_result(run: PointRun, settings: BenchConfig, *, simulated: bool) -> dict[str, Any]:
    """The result JSON of one point (vLLM's keys, then rillet's)."""
    records = run.records
    done = [r for r in records if r.ok]
    percentiles = settings.percentiles
    ended_ns = max((r.end_ns for r in records), default=run.started_ns)
    duration = max((ended_ns - run.started_ns) / 1e9, 1e-9)
    total_input = sum(r.total_input_tokens for r in done)
    total_output = sum(r.output_tokens for r in done)
    open_loop = run.mode == "request_rate"
    intervals = [(r.start_ns, r.end_ns) for r in records]
    result: dict[str, Any] = {
        "date": time.strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": BACKEND,
        "backend": BACKEND,
        "label": settings.label,
        "model_id": settings.model,
        "tokenizer_id": settings.model,
        "num_prompts": len(records) + run.cancelled,
        "request_rate": ("inf" if math.isinf(run.value) else run.value) if open_loop else "inf",
        "burstiness": settings.burstiness,
        "max_concurrency": settings.max_concurrency if open_loop else int(run.value),
        "duration": duration,
        "completed": len(done),
        "failed": len(records) - len(done),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(done) / duration,
        "request_goodput": _goodput(done, settings.goodput) / duration if settings.goodput else None,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
        **per_request(records),
        "max_output_tokens_per_s": peak_tokens_per_second(done),
        "max_concurrent_requests": peak_overlap(intervals),
    }
    result |= _timings(done, percentiles)
    result |= _client(run, records, duration, ended_ns, intervals, percentiles)
    result |= _outcomes(run, records, done, settings)
    result |= _cost(run, records)
    result |= _truth(run, done, percentiles)
    result |= {"simulated": simulated, "percentiles": percentiles, "goodput_slos_ms": settings.goodput}
    result |= versions()
    return result


PER_REQUEST = ("input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "errors")
"""vLLM's per-request lists (its ``--save-detailed``): one entry per measured request, a failed one
with zeros and its error; what ``rillet bench compare`` tests for significance."""


def per_request(records: Sequence[RequestRecord]) -> dict[str, list[Any]]:
    """vLLM's per-request lists in request order; ``errors`` holds "" for a success, else the error's type."""
    records = sorted(records, key=lambda r: r.index)
    return {
        "input_lens": [r.total_input_tokens for r in records],
        "output_lens": [r.output_tokens if r.ok else 0 for r in records],
        "ttfts": [(r.ttft or 0.0) if r.ok else 0.0 for r in records],
        "itls": [r.itl if r.ok else [] for r in records],
        "latencies": [(r.e2e or 0.0) if r.ok else 0.0 for r in records],
        "start_times": [(r.transport_ns or r.start_ns) / 1e9 for r in records],
        "errors": ["" if r.ok else r.error_type or "error" for r in records],
    }


def peak_tokens_per_second(done: Sequence[RequestRecord]) -> float:
    """vLLM's peak: tokens bucketed by whole seconds since the first request's zero, each chunk's
    tokens at its arrival (a chunk's tokens arrive together)."""
    if not done:
        return 0.0
    first = min(r.transport_ns or r.start_ns for r in done)
    buckets: Counter[int] = Counter()
    for r in done:
        if r.ttft is None:
            continue
        tokens = r.chunk_tokens or [1] * (len(r.chunk_gaps) + 1)
        zero = (r.transport_ns or r.start_ns) - first
        times = itertools.accumulate(r.chunk_gaps, initial=zero / 1e9 + r.ttft)
        for at, count in zip(times, tokens, strict=False):
            buckets[int(at)] += count
    return float(max(buckets.values(), default=0))


def _goodput(done: Sequence[RequestRecord], slos: dict[str, float]) -> int:
    def good(r: RequestRecord) -> bool:
        values = {"ttft": r.ttft, "tpot": r.tpot if r.tpot is not None else 0.0, "e2el": r.e2e}
        return all(values[k] is not None and values[k] * 1000 <= ms for k, ms in slos.items())  # type: ignore[operator]

    return sum(1 for r in done if good(r))


def _values(records: Sequence[RequestRecord], name: str) -> list[float]:
    return [v for r in records if (v := getattr(r, name)) is not None]


def _timings(done: Sequence[RequestRecord], percentiles: Sequence[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    out |= Summary.of(_values(done, "ttft"), percentiles).keys("ttft")
    out |= Summary.of(_values(done, "tpot"), percentiles).keys("tpot")
    out |= Summary.of((gap for r in done for gap in r.itl), percentiles).keys("itl")
    out |= Summary.of((gap for r in done for gap in r.chunk_gaps), percentiles).keys("chunk_gap")
    out |= Summary.of(_values(done, "e2e"), percentiles).keys("e2el")
    for name in ("ttft_text", "ttft_thinking", "ttft_from_call", "to_headers", "to_message_start"):
        values = _values(done, name)
        out |= Summary.of(values, percentiles).keys(name)
        out[f"count_{name}"] = len(values)
    return out


def _client(
    run: PointRun,
    records: Sequence[RequestRecord],
    duration: float,
    ended_ns: int,
    intervals: Sequence[tuple[int, int]],
    percentiles: Sequence[float],
) -> dict[str, Any]:
    """Was the client the bottleneck? Offered against achieved, configured against real."""
    lags = [lag for r in records if (lag := r.schedule_lag) is not None]
    releases = sorted(r.released_ns for r in records)
    span = (releases[-1] - releases[0]) / 1e9 if len(releases) > 1 else 0.0
    loop = Summary.of(run.loop_lag, percentiles)
    out: dict[str, Any] = {
        "offered_request_rate": run.value
        if run.mode == "request_rate" and not math.isinf(run.value)
        else None,
        "achieved_request_rate": (len(releases) - 1) / span if span > 0 else None,
        "configured_concurrency": int(run.value) if run.mode == "concurrency" else None,
        "mean_concurrency": mean_overlap(intervals, run.started_ns, ended_ns),
        "max_loop_lag_ms": loop.maximum * 1000,
        "loop_lag_samples": loop.count,
        "client_peak_rss_bytes": max(run.peak_rss_bytes, default=0),
        "workers": max(1, len(run.peak_rss_bytes)),
    }
    out |= loop.keys("loop_lag")
    out |= Summary.of(lags, percentiles).keys("schedule_lag")
    out["max_schedule_lag_ms"] = max(lags, default=0.0) * 1000
    out |= Summary.of((r.slot_wait for r in records), percentiles).keys("slot_wait")
    dispatch = [(r.sent_ns - r.start_ns) / 1e9 for r in records if r.sent_ns is not None]
    out |= Summary.of(dispatch, percentiles).keys("dispatch")
    out |= Summary.of(_values(records, "request_build"), percentiles).keys("request_build")
    out |= _client_delay(records, percentiles)
    return out


def _client_delay(records: Sequence[RequestRecord], percentiles: Sequence[float]) -> dict[str, Any]:
    """Every item's socket → sinks delay, from the streams' histograms merged: read from buckets,
    so a percentile is interpolated within its bucket; the maximum is exact."""
    delay = ClientDelay.merged(ClientDelay.from_json(r.client_delay) for r in records if r.client_delay)
    out: dict[str, Any] = {
        "client_delay_items": delay.count,
        "mean_client_delay_ms": delay.mean * 1000,
        "median_client_delay_ms": delay.quantile(0.5) * 1000,
        "max_client_delay_ms": delay.maximum * 1000,
    }
    for p in percentiles:
        out[f"{percentile_label(p)}_client_delay_ms"] = delay.quantile(p / 100) * 1000
    return out


def _outcomes(
    run: PointRun, records: Sequence[RequestRecord], done: Sequence[RequestRecord], settings: BenchConfig
) -> dict[str, Any]:
    return {
        "cancelled": run.cancelled,
        "interrupted": run.interrupted,
        "warmup_requests": run.warmup,
        "stop_reasons": dict(Counter(r.stop_reason or "none" for r in done)),
        "ended_short": sum(1 for r in done if r.stop_reason != "max_tokens"),
        "error_counts": dict(Counter(r.error_type or "error" for r in records if not r.ok)),
        "attempts": sum(r.attempts for r in records),
        "total_cache_read_input_tokens": sum(r.cache_read_input_tokens for r in done),
        "total_cache_creation_input_tokens": sum(r.cache_creation_input_tokens for r in done),
    }


def _cost(run: PointRun, records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Actual cost from usage, over every measured request: a failed one may be billed too."""
    costs = [r.cost_usd for r in records if r.cost_usd is not None]
    return {
        "estimated_cost_usd": run.estimated_cost_usd,
        "cost_usd": math.fsum(costs) if costs else 0.0,
        "cost_estimated": any(r.cost_estimated for r in records),
    }


def _truth(run: PointRun, done: Sequence[RequestRecord], percentiles: Sequence[float]) -> dict[str, Any]:
    truth = run.truth
    out: dict[str, Any] = {
        "truth_checked": truth.checked if truth else 0,
        "server_max_concurrent_requests": truth.server_max_concurrent_requests if truth else None,
        "lost_deltas": truth.lost_deltas if truth else None,
    }
    errors = _values(done, "ttft_error")
    if not errors:
        return out
    out |= Summary.of(errors, percentiles).keys("ttft_error")
    out["max_ttft_error_ms"] = max(errors) * 1000
    out |= Summary.of(_values(done, "ttft_error_send"), percentiles).keys("ttft_error_send")
    out |= Summary.of(_values(done, "ttft_error_receive"), percentiles).keys("ttft_error_receive")
    return out
