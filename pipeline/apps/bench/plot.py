"""Runs as one PNG, drawn from their result objects alone, so saved results re-plot the same way.

A sweep gets six panels (TTFT p50/p90/p99 against load with the goodput SLO, throughput and
TPOT/ITL against load, the TTFT and ITL distributions at each run's highest load, tokens over time
per request); a single point four (TTFT, ITL and E2E distributions, tokens over time). Several
runs are overlaid, one colour each. Rules a reader can trust: every axis names its unit, latency
axes start at zero (``zoom`` fits them to the data), concurrency is on a log2 axis ticked at the
values run, histogram counts are whole numbers, every panel of several lines has a legend.

matplotlib is imported here only, with the Agg backend, so a run without ``--plot`` never loads
it and a headless machine never needs a display.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.apps.bench.files import SavedRun
from pipeline.apps.bench.tables import point_name

MAX_TRACES = 200
"""Requests drawn in the tokens-over-time panel: more is ink, not information."""

BINS, MIN_BINS = 40, 8
"""Histogram bins: about three samples a bin per run, within these bounds."""
STYLES = {"50": "-", "90": "--", "99": ":"}


def plot(runs: Sequence[SavedRun], path: Path, *, zoom: bool = False) -> None:
    """Writes the figure for one run or several overlaid."""
    import matplotlib.pyplot as plt

    fig = draw(runs, zoom=zoom)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw(runs: Sequence[SavedRun], *, zoom: bool = False) -> Any:
    """The figure (a matplotlib ``Figure``) for one run or several overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = any(len(run.points) > 1 for run in runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    painted = [(run, colors[i % len(colors)]) for i, run in enumerate(runs)]
    if sweep:
        fig, grid = plt.subplots(2, 3, figsize=(17, 9.5))
        (ttft_ax, tput_ax, tpot_ax), (ttft_hist, itl_hist, trace_ax) = grid
        _ttft_against_load(ttft_ax, painted, zoom)
        _throughput_against_load(tput_ax, painted)
        _tpot_against_load(tpot_ax, painted, zoom)
    else:
        fig, grid = plt.subplots(2, 2, figsize=(13, 9))
        (ttft_hist, itl_hist), (e2e_hist, trace_ax) = grid
        _histogram(e2e_hist, painted, _e2es, "End-to-end latency (E2E)", "E2E (ms)", "requests", zoom)
    _histogram(ttft_hist, painted, _ttfts, "TTFT distribution", "TTFT (ms)", "requests", zoom)
    _histogram(itl_hist, painted, _itls, "Inter-token latency (per token)", "ITL (ms)", "tokens", zoom)
    _traces(trace_ax, runs[0])
    first = runs[0].points[0]
    simulated = " · simulator" if first.get("simulated") else ""
    fig.suptitle(f"rillet bench · {first.get('model_id', '?')}{simulated}")
    fig.tight_layout()
    return fig


def _closed(point: dict[str, Any]) -> bool:
    rate = point["request_rate"]
    return rate == "inf" or (isinstance(rate, float) and math.isinf(rate))


def _load(point: dict[str, Any]) -> float:
    return float(point["max_concurrency"] if _closed(point) else point["request_rate"])


def _load_axis(ax: Any, painted: Sequence[tuple[SavedRun, str]]) -> None:
    """A log2 load axis ticked at the values run, with its unit."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    closed = _closed(painted[0][0].points[0])
    xs = sorted({_load(p) for run, _ in painted for p in _swept(run, closed)})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("concurrency (requests in flight, log2)" if closed else "request rate (req/s, log2)")


def _swept(run: SavedRun, closed: bool) -> list[dict[str, Any]]:
    return [p for p in run.points if _closed(p) == closed and (not closed or p.get("max_concurrency"))]


def _series(ax: Any, run: SavedRun, key: str, **style: Any) -> None:
    points = _swept(run, _closed(run.points[0]))
    values = [(_load(p), p.get(key)) for p in points]
    xs, ys = zip(*[(x, y) for x, y in values if y is not None], strict=True) if values else ((), ())
    ax.plot(xs, ys, marker="o", **style)


def _ttft_against_load(ax: Any, painted: Sequence[tuple[SavedRun, str]], zoom: bool) -> None:
    several = len(painted) > 1
    for run, color in painted:
        for label, style in STYLES.items():
            key = "median_ttft_ms" if label == "50" else f"p{label}_ttft_ms"
            if any(key in p for p in run.points):
                name = f"{run.name} · p{label}" if several else f"p{label}"
                _series(ax, run, key, color=color, linestyle=style, label=name)
    slos = {p.get("goodput_slos_ms", {}).get("ttft") for run, _ in painted for p in run.points} - {None}
    for slo in sorted(slos):
        ax.axhline(slo, color="tab:red", linewidth=1, linestyle="-.", label=f"goodput SLO: TTFT ≤ {slo:g} ms")
    _load_axis(ax, painted)
    ax.set(title="TTFT against load", ylabel="TTFT (ms)")
    _from_zero(ax, zoom)
    ax.legend(fontsize=8)


def _throughput_against_load(ax: Any, painted: Sequence[tuple[SavedRun, str]]) -> None:
    for run, color in painted:
        _series(ax, run, "output_throughput", color=color, label=f"{run.name} · output tokens/s")
    _load_axis(ax, painted)
    ax.set(title="Output throughput against load", ylabel="output tokens/s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def _tpot_against_load(ax: Any, painted: Sequence[tuple[SavedRun, str]], zoom: bool) -> None:
    for run, color in painted:
        _series(ax, run, "median_tpot_ms", color=color, label=f"{run.name} · TPOT p50")
        _series(
            ax, run, "median_itl_ms", color=color, linestyle="--", label=f"{run.name} · ITL p50 (per token)"
        )
    _load_axis(ax, painted)
    ax.set(title="TPOT and ITL against load", ylabel="ms per output token")
    _from_zero(ax, zoom)
    ax.legend(fontsize=8, loc="lower right")


def _ok(point: dict[str, Any]) -> list[int]:
    return [i for i, error in enumerate(point.get("errors") or []) if not error]


def _ttfts(point: dict[str, Any]) -> list[float]:
    return [point["ttfts"][i] * 1000 for i in _ok(point)]


def _e2es(point: dict[str, Any]) -> list[float]:
    return [point["latencies"][i] * 1000 for i in _ok(point)]


def _itls(point: dict[str, Any]) -> list[float]:
    return [gap * 1000 for i in _ok(point) for gap in point["itls"][i]]


def _histogram(
    ax: Any,
    painted: Sequence[tuple[SavedRun, str]],
    values_of: Any,
    title: str,
    xlabel: str,
    ylabel: str,
    zoom: bool,
) -> None:
    """Each run's highest load point, on bins common to the runs; whole-number counts."""
    from matplotlib.ticker import MaxNLocator

    samples = [(run, color, values_of(run.points[-1])) for run, color in painted]
    every = [v for _, _, values in samples for v in values]
    if every:
        low, high = min(every), max(every)  # bins over the data; the axis still starts at zero
        bins = min(BINS, max(MIN_BINS, len(every) // (3 * len(painted))))
        width = (high - low) / bins or 1.0
        edges = [low + i * width for i in range(bins + 1)]
        for run, color, values in samples:
            label = (
                f"{run.name} · {point_name(run.points[-1])}"
                if len(painted) > 1
                else point_name(run.points[-1])
            )
            ax.hist(values, bins=edges, alpha=0.55 if len(painted) > 1 else 0.9, color=color, label=label)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no completed requests", ha="center", va="center", transform=ax.transAxes)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if not zoom:
        ax.set_xlim(left=0)


def _traces(ax: Any, run: SavedRun) -> None:
    """Output tokens received over time, one line per request, at the run's highest load."""
    point = run.points[-1]
    ok = _ok(point)
    starts = point.get("start_times") or []
    if not ok or not starts:
        ax.text(0.5, 0.5, "no completed requests", ha="center", va="center", transform=ax.transAxes)
    first = min(starts, default=0.0)
    shown = ok[:MAX_TRACES]
    for n, i in enumerate(shown):
        gaps = point["itls"][i]
        start = starts[i] - first + point["ttfts"][i]
        times = list(itertools.accumulate(gaps, initial=start))
        head = point["output_lens"][i] - len(gaps)  # the first chunk's tokens
        label = f"one line per request ({len(shown)} of {len(ok)})" if n == 0 else None
        ax.step(times, range(head, head + len(times)), where="post", linewidth=0.6, alpha=0.5, label=label)
    if shown:
        ax.legend(fontsize=8, loc="upper left")
    ax.set(
        title=f"Tokens over time per request ({run.name} · {point_name(point)})",
        xlabel="time since the point's first request (s)",
        ylabel="output tokens received",
    )
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)


def _from_zero(ax: Any, zoom: bool) -> None:
    """Latency from zero, with room above the highest line for it to read as a line."""
    if not zoom:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
