"""Per-token ITL (vLLM's keys) beside the per-chunk gaps (``chunk_gap``), against hand computations."""

from __future__ import annotations

import io

import pytest

from pipeline.apps.bench import BenchConfig, SimulatorConfig, run_bench
from pipeline.apps.bench.record import RequestRecord, split_tokens
from pipeline.apps.bench.results import PointRun, peak_tokens_per_second, point_result

MS = 1_000_000


def record(index: int, *, zero_ms: int, ttft: float, gaps: list[float], tokens: list[int]) -> RequestRecord:
    start = 1_000 * MS + zero_ms * MS
    e2e = ttft + sum(gaps)
    return RequestRecord(
        index=index, worker=0, request_id=f"req_{index}", outcome="completed", error_type=None,
        stop_reason="max_tokens", attempts=1, max_tokens=sum(tokens), start_ns=start,
        end_ns=start + round(e2e * 1e9), released_ns=start, slot_ns=start, transport_ns=start, ttft=ttft,
        e2e=e2e, chunk_gaps=gaps, chunk_tokens=tokens, output_tokens=sum(tokens),
    )  # fmt: skip


def test_split_tokens_by_hand() -> None:
    """One token a chunk, the rest by characters with the largest remainders first."""
    # 12 tokens over 1, 2, 3, 4 characters: 8 to share → 0.8, 1.6, 2.4, 3.2 → 0, 1, 2, 3 and the
    # two largest remainders (0.8, 0.6) get one more each.
    assert split_tokens(12, [1, 2, 3, 4]) == [2, 3, 3, 4]
    assert split_tokens(10, [3, 3, 4]) == [3, 3, 4]
    assert split_tokens(2, [5, 5, 5]) == [1, 1, 1]  # a chunk with content is at least a token
    assert split_tokens(7, [0, 0]) == [4, 3]  # no characters (signatures): evenly
    assert split_tokens(5, []) == []


def test_per_token_itl_by_hand() -> None:
    """Gaps 30, 20, 60 ms ending chunks of 3, 4 and 2 tokens: 10 ms ×3, 5 ms ×4, 30 ms ×2."""
    r = record(0, zero_ms=0, ttft=0.1, gaps=[0.03, 0.02, 0.06], tokens=[2, 3, 4, 2])
    assert r.itl == pytest.approx([0.01] * 3 + [0.005] * 4 + [0.03] * 2)
    result = point_result(PointRun("concurrency", 1.0, r.start_ns, [r]), BenchConfig(), simulated=True)
    assert result["mean_itl_ms"] == pytest.approx(110 / 9)
    assert result["median_itl_ms"] == pytest.approx(10.0)  # 5th of 9: 5 5 5 5 [10] 10 10 30 30
    assert result["mean_chunk_gap_ms"] == pytest.approx(110 / 3)
    assert result["median_chunk_gap_ms"] == pytest.approx(30.0)
    assert result["p99_chunk_gap_ms"] == pytest.approx(30 + 0.98 * 30)  # between 30 and 60 ms


def test_unknown_chunk_tokens_fall_back_to_chunk_gaps() -> None:
    """Without a token count per chunk (a retried stream) ITL is the chunk gaps, as before."""
    r = record(0, zero_ms=0, ttft=0.1, gaps=[0.03, 0.02], tokens=[])
    assert r.itl == [0.03, 0.02]


def test_peak_output_tokens_per_second_by_hand() -> None:
    """vLLM's buckets: whole seconds since the first request's zero, a chunk's tokens at its arrival."""
    first = record(0, zero_ms=0, ttft=0.5, gaps=[0.3, 0.4], tokens=[2, 3, 1])  # 0.5 s: 2, 0.8: 3, 1.2: 1
    second = record(1, zero_ms=600, ttft=0.2, gaps=[0.5], tokens=[4, 2])  # 0.8 s: 4, 1.3 s: 2
    assert peak_tokens_per_second([first, second]) == 9.0  # second 0: 2 + 3 + 4; second 1: 1 + 2


@pytest.mark.anyio
async def test_a_real_run_deals_every_token_once() -> None:
    """Against the simulator (2 to 6 tokens a chunk): every output token in one chunk, one ITL sample
    per token after the first chunk, and the per-token samples add up to the chunk gaps."""
    settings = BenchConfig(
        num_requests=4, concurrency=[2], output_tokens=40, progress="off",
        simulator=SimulatorConfig(ttft_ms=5, tokens_per_s=4000),
    )  # fmt: skip
    report = await run_bench(settings, out=io.StringIO(), err=io.StringIO())
    (run,) = report.runs
    for r in run.records:
        assert sum(r.chunk_tokens) == r.output_tokens == 40
        assert len(r.chunk_tokens) == len(r.chunk_gaps) + 1
        assert max(r.chunk_tokens) > 1  # several tokens a chunk: per token differs from per chunk
        assert len(r.itl) == 40 - r.chunk_tokens[0]
        assert sum(r.itl) == pytest.approx(sum(r.chunk_gaps))
    (result,) = report.results
    assert result["mean_itl_ms"] < result["mean_chunk_gap_ms"]
    assert result["max_output_tokens_per_s"] > 0
