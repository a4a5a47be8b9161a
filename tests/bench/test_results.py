"""Results: percentiles and goodput against reference computations, merged samples, vLLM's keys."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.apps.bench.console import summary
from pipeline.apps.bench.record import RequestRecord
from pipeline.apps.bench.results import PointRun, point_result
from pipeline.apps.bench.settings import BenchConfig
from pipeline.apps.bench.stats import Summary, peak_overlap, percentile

VLLM_KEYS = {
    "date", "backend", "model_id", "num_prompts", "request_rate", "burstiness", "max_concurrency",
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
    "request_goodput", "output_throughput", "total_token_throughput", "max_concurrent_requests",
}  # fmt: skip

RILLET_KEYS = {
    "p99_ttft_text_ms", "p99_to_headers_ms", "p99_to_message_start_ms", "p99_schedule_lag_ms",
    "p99_loop_lag_ms", "p99_slot_wait_ms", "cost_usd", "estimated_cost_usd", "stop_reasons",
    "error_counts", "ended_short", "rillet_version", "sdk_version", "achieved_request_rate",
    "offered_request_rate", "mean_concurrency", "client_peak_rss_bytes", "p99_chunk_gap_ms",
}  # fmt: skip

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=200), st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy(values: list[float], p: float) -> None:
    """Linear interpolation between closest ranks: numpy's default, so vLLM's figures compare."""
    assert percentile(sorted(values), p) == pytest.approx(float(np.percentile(values, p)), rel=1e-9, abs=1e-9)


@given(st.lists(finite, min_size=1, max_size=200))
def test_summary_matches_numpy(values: list[float]) -> None:
    """Mean, median and population standard deviation as ``np.mean``, ``np.median``, ``np.std``."""
    s = Summary.of(values, [99.0])
    assert s.mean == pytest.approx(float(np.mean(values)), rel=1e-9, abs=1e-6)
    assert s.median == pytest.approx(float(np.median(values)), rel=1e-9, abs=1e-9)
    assert s.std == pytest.approx(float(np.std(values)), rel=1e-6, abs=1e-6)


def test_empty_sample_reports_zeros() -> None:
    """As vLLM's ``np.mean(values or 0)``: no sample is a zero, not a crash."""
    assert Summary.of([], [99.0]).keys("ttft") == {
        "mean_ttft_ms": 0.0, "median_ttft_ms": 0.0, "std_ttft_ms": 0.0, "p99_ttft_ms": 0.0,
    }  # fmt: skip


def test_peak_overlap() -> None:
    """Touching intervals do not overlap; nested ones do."""
    assert peak_overlap([(0, 10), (10, 20)]) == 1
    assert peak_overlap([(0, 10), (5, 20), (6, 7)]) == 3
    assert peak_overlap([]) == 0


def record(index: int, rng: random.Random, *, worker: int = 0, ok: bool = True) -> RequestRecord:
    start = 1_000_000_000 + index * 50_000_000
    ttft = rng.uniform(0.1, 0.9)
    itl = [rng.uniform(0.005, 0.05) for _ in range(rng.randint(1, 30))]
    e2e = ttft + sum(itl)
    output = rng.randint(2, 200)
    return RequestRecord(
        index=index, worker=worker, request_id=f"req_{index}", outcome="completed" if ok else "error",
        error_type=None if ok else "http_529_overloaded_error", stop_reason="max_tokens" if ok else None,
        attempts=1, max_tokens=200, start_ns=start, end_ns=start + round(e2e * 1e9), released_ns=start,
        slot_ns=start, ttft=ttft, e2e=e2e, chunk_gaps=itl, tpot=(e2e - ttft) / (output - 1),
        output_tokens=output, input_tokens=100, cost_usd=0.001,
    )  # fmt: skip


def run_of(records: list[RequestRecord], **extra: Any) -> PointRun:
    return PointRun("concurrency", 4.0, min(r.released_ns for r in records), records, **extra)


def test_vllm_and_rillet_keys() -> None:
    """vLLM's keys, mean/median/std/p{P} per metric for every percentile asked, p99 always."""
    rng = random.Random(0)
    settings = BenchConfig(percentiles=[50, 90, 99.9], goodput={"ttft": 500})
    result = point_result(
        run_of([record(i, rng) for i in range(20)], loop_lag=[0.001]), settings, simulated=True
    )
    assert VLLM_KEYS <= result.keys()
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std", "p50", "p90", "p99", "p99.9"):
            assert f"{stat}_{metric}_ms" in result
    assert RILLET_KEYS <= result.keys()
    assert summary(result).startswith("=" * 12 + " Serving Benchmark Result ")


def test_percentiles_and_goodput_against_a_reference() -> None:
    """TTFT/ITL/TPOT/E2E percentiles and goodput recomputed independently with numpy."""
    rng = random.Random(5)
    records = [record(i, rng) for i in range(40)] + [record(40 + i, rng, ok=False) for i in range(3)]
    slos = {"ttft": 600.0, "tpot": 20.0, "e2el": 1200.0}
    result = point_result(run_of(records), BenchConfig(goodput=slos), simulated=True)
    done = [r for r in records if r.ok]
    assert result["completed"] == 40
    assert result["failed"] == 3
    assert result["p99_ttft_ms"] == pytest.approx(np.percentile([r.ttft for r in done], 99) * 1000)
    assert result["median_itl_ms"] == pytest.approx(np.median([g for r in done for g in r.itl]) * 1000)
    assert result["std_tpot_ms"] == pytest.approx(np.std([r.tpot for r in done]) * 1000)
    assert result["mean_e2el_ms"] == pytest.approx(np.mean([r.e2e for r in done]) * 1000)
    good = sum(
        1 for r in done
        if r.ttft * 1000 <= slos["ttft"] and r.tpot * 1000 <= slos["tpot"] and r.e2e * 1000 <= slos["e2el"]
    )  # fmt: skip
    assert 0 < good < 40
    assert result["request_goodput"] == pytest.approx(good / result["duration"])
    assert result["output_throughput"] == pytest.approx(
        sum(r.output_tokens for r in done) / result["duration"]
    )
    assert result["error_counts"] == {"http_529_overloaded_error": 3}
    assert result["errors"] == [""] * 40 + ["http_529_overloaded_error"] * 3


def test_merged_workers_equal_one_process_on_the_same_samples() -> None:
    """Two workers' records merged give the single-process figures; averaging percentiles would not."""
    rng = random.Random(9)
    records = [record(i, rng, worker=i % 2) for i in range(60)]
    for r in records[::2]:
        r.ttft = (r.ttft or 0) * 5
    settings = BenchConfig()
    lags = [[0.001, 0.002], [0.004]]
    merged = point_result(
        run_of(records[0::2] + records[1::2], loop_lag=lags[0] + lags[1]), settings, simulated=True
    )
    single = point_result(run_of(records, loop_lag=[0.001, 0.002, 0.004]), settings, simulated=True)
    merged.pop("date"), single.pop("date")
    assert merged == single
    halves = [point_result(run_of(records[w::2]), settings, simulated=True)["p99_ttft_ms"] for w in (0, 1)]
    assert single["p99_ttft_ms"] != pytest.approx(sum(halves) / 2)
