"""``rillet bench`` end to end against the embedded simulator: results, files, errors, truth."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.apps.bench import BenchConfig, SimulatorConfig, run_bench
from pipeline.apps.bench.run import BenchReport

pytestmark = pytest.mark.anyio

FAST = SimulatorConfig(ttft_ms=20, tokens_per_s=2000)


async def bench(**settings: Any) -> tuple[BenchReport, str]:
    out = io.StringIO()
    options = {
        "num_requests": 8,
        "concurrency": [2],
        "output_tokens": 16,
        "simulator": FAST,
        "progress": "off",
    }
    report = await run_bench(BenchConfig(**(options | settings)), out=out, err=io.StringIO())
    return report, out.getvalue()


async def test_run_writes_results_requests_and_plot(tmp_path: Path) -> None:
    """A point's result JSON, one JSON line per request, a PNG, and the truth check filled in."""
    report, console = await bench(
        result_json=tmp_path / "r.json", save_requests=tmp_path / "r.jsonl", plot=tmp_path / "p.png"
    )
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["completed"] == 8
    assert result["failed"] == 0
    assert result["stop_reasons"] == {"max_tokens": 8}
    assert result["ended_short"] == 0
    assert result["truth_checked"] == 8
    assert result["lost_deltas"] == 0
    assert result["server_max_concurrent_requests"] <= 2
    assert result["max_concurrent_requests"] <= 2
    assert result["p99_ttft_error_ms"] > 0
    assert result["median_ttft_ms"] >= 20
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    assert all(line["request_id"].startswith("req_") for line in lines)
    assert all(line["output_tokens"] == 16 and line["ttft"] > 0 for line in lines)
    for line in lines:
        assert line["start_ns"] <= line["sent_ns"] <= line["transport_ns"]
        assert line["request_build"] == (line["transport_ns"] - line["sent_ns"]) / 1e9
        assert line["ttft_from_call"] == pytest.approx(line["ttft"] + line["request_build"])
        assert line["ttft_error_send"] > 0  # the server got the request after the client sent it
    assert result["p99_request_build_ms"] > 0
    assert result["client_delay_items"] == sum(sum(line["client_delay"]["counts"]) for line in lines)
    assert result["client_delay_items"] > 8 * 5
    assert 0 < result["p99_client_delay_ms"] <= result["max_client_delay_ms"]
    assert "Client delay, socket to sinks" in console
    assert result["median_ttft_from_call_ms"] > result["median_ttft_ms"]
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Serving Benchmark Result" in console
    assert "TTFT error" in console
    assert report.status == 0


async def test_sweep_gives_one_result_per_point(tmp_path: Path) -> None:
    """A list of rates is a sweep: one result each, a JSON array, one plot with the curves, and the
    console ends with one table over the points."""
    _report, console = await bench(
        concurrency=None, request_rate=[50.0, 100.0], num_requests=6, warmup=1,
        result_json=tmp_path / "r.json", plot=tmp_path / "p.png",
    )  # fmt: skip
    table = console[console.index("rillet bench report") :]
    assert [line.split("│")[1].strip() for line in table.splitlines() if "rate " in line] == [
        "rate 50/s", "rate 100/s",
    ]  # fmt: skip
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["request_rate"] for r in results] == [50.0, 100.0]
    assert all(r["completed"] == 6 and r["offered_request_rate"] is not None for r in results)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("scenario", "key"),
    [
        ("rate_limited", "http_429_rate_limit_error"),
        ("unavailable", "http_529_overloaded_error"),
        ("overloaded", "stream_overloaded_error"),
        ("drop", "stream_connection_error"),
    ],
)
async def test_each_simulator_error_is_counted_under_its_type(scenario: str, key: str) -> None:
    """429, 529, a mid-stream error event and a drop: failures under their own type, never retried."""
    options = SimulatorConfig(scenario=scenario, ttft_ms=5)
    report, _ = await bench(num_requests=4, warmup=0, output_tokens=200, simulator=options)
    result = report.results[0]
    assert result["completed"] == 0
    assert result["failed"] == 4
    assert result["error_counts"] == {key: 4}
    assert result["errors"] == [key] * 4
    assert result["attempts"] == 4


async def test_workers_merge_their_samples() -> None:
    """Two worker processes: every request counted once, percentiles over the merged samples."""
    report, _ = await bench(num_requests=10, workers=2, concurrency=[4])
    run, result = report.runs[0], report.results[0]
    assert result["completed"] == 10
    assert result["workers"] == 2
    assert {r.worker for r in run.records} == {0, 1}
    assert sorted(r.index for r in run.records) == list(range(10))


async def test_a_closed_loop_of_one_is_one_request_at_a_time_on_the_server() -> None:
    """The next request may reach the server before the last handler has finished; that is no overlap."""
    report, _ = await bench(concurrency=[1], num_requests=6)
    (result,) = report.results
    assert result["truth_checked"] == 6
    assert result["server_max_concurrent_requests"] == 1


async def test_requests_are_dealt_over_several_clients_at_high_concurrency() -> None:
    """Past CONNECTIONS_PER_CLIENT slots the requests use several pools, and every one completes."""
    report, _ = await bench(concurrency=[40], num_requests=80)
    (result,) = report.results
    assert result["completed"] == 80
    assert result["lost_deltas"] == 0
    assert result["server_max_concurrent_requests"] <= 40
