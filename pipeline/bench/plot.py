"""The run as one PNG: TTFT and ITL distributions, tokens over time, and the sweep's curves.

matplotlib is imported here only, with the Agg backend, so a run without ``--plot`` never loads
it and a headless machine never needs a display.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.bench.results import PointRun

MAX_TRACES = 200
"""Requests drawn in the tokens-over-time panel: more is ink, not information."""


def plot(runs: Sequence[PointRun], results: Sequence[dict[str, Any]], path: Path) -> None:
    """Writes the figure; a sweep adds TTFT p50/p99 and throughput against the swept value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = len(runs) > 1
    fig, axes = plt.subplots(2, 2 if not sweep else 3, figsize=(15 if sweep else 11, 8), squeeze=False)
    ttft_ax, itl_ax, trace_ax = axes[0][0], axes[0][1], axes[1][0]
    for run in runs:
        done = [r for r in run.records if r.ok]
        label = f"{_name(run)}"
        ttfts = [r.ttft * 1000 for r in done if r.ttft is not None]
        gaps = [g * 1000 for r in done for g in r.chunk_gaps]
        if ttfts:
            ttft_ax.hist(ttfts, bins=40, alpha=0.6, label=label)
        if gaps:
            itl_ax.hist(gaps, bins=60, alpha=0.6, label=label)
    ttft_ax.set(title="TTFT (first content delta)", xlabel="ms", ylabel="requests")
    itl_ax.set(title="Inter-chunk gaps (ITL)", xlabel="ms", ylabel="gaps")
    itl_ax.set_yscale("log")
    _traces(trace_ax, runs[-1])
    if sweep:
        _sweep(axes[0][2], axes[1][1], runs, results)
        axes[1][2].axis("off")
    else:
        axes[1][1].axis("off")
        axes[1][1].text(0, 1, _caption(results[0]), va="top", family="monospace", fontsize=9)
    for ax in (ttft_ax, itl_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(
        f"rillet bench · {results[0]['model_id']}" + (" · simulator" if results[0]["simulated"] else "")
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _name(run: PointRun) -> str:
    value = "inf" if math.isinf(run.value) else f"{run.value:g}"
    return f"rate {value}/s" if run.mode == "request_rate" else f"concurrency {value}"


def _traces(ax: Any, run: PointRun) -> None:
    """Content deltas received over time, one line per request (time from the point's start)."""
    done = [r for r in run.records if r.ok and r.ttft is not None][:MAX_TRACES]
    for record in done:
        assert record.ttft is not None
        start = (record.start_ns - run.started_ns) / 1e9 + record.ttft
        times = list(itertools.accumulate(record.chunk_gaps, initial=start))
        ax.step(times, range(1, len(times) + 1), where="post", linewidth=0.6, alpha=0.5)
    ax.set(
        title=f"Stream progress per request ({_name(run)})", xlabel="s since start", ylabel="content deltas"
    )


def _sweep(ttft_ax: Any, tput_ax: Any, runs: Sequence[PointRun], results: Sequence[dict[str, Any]]) -> None:
    xs = [r.value for r in runs]
    xlabel = "request rate (req/s)" if runs[0].mode == "request_rate" else "concurrency"
    ttft_ax.plot(xs, [r["median_ttft_ms"] for r in results], marker="o", label="p50")
    ttft_ax.plot(xs, [r["p99_ttft_ms"] for r in results], marker="o", label="p99")
    ttft_ax.set(title="TTFT against load", xlabel=xlabel, ylabel="ms")
    ttft_ax.legend(fontsize=8)
    tput_ax.plot(xs, [r["output_throughput"] for r in results], marker="o", label="output tok/s")
    tput_ax.set(title="Throughput against load", xlabel=xlabel, ylabel="output tokens/s")
    twin = tput_ax.twinx()
    twin.plot(xs, [r["request_throughput"] for r in results], marker="s", color="tab:red", label="req/s")
    twin.set_ylabel("requests/s")


def _caption(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"completed {result['completed']}, failed {result['failed']}",
            f"duration {result['duration']:.2f} s",
            f"TTFT p50 {result['median_ttft_ms']:.1f} ms, p99 {result['p99_ttft_ms']:.1f} ms",
            f"ITL p50 {result['median_itl_ms']:.2f} ms, p99 {result['p99_itl_ms']:.2f} ms",
            f"TPOT p50 {result['median_tpot_ms']:.2f} ms",
            f"output {result['output_throughput']:.1f} tok/s",
            f"peak concurrency {result['max_concurrent_requests']}",
        ]
    )
