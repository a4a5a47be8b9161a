"""``rillet bench report`` and ``compare``: saved results as one table, or two runs side by side.

A change between two runs counts only when it exceeds the run-to-run noise, so ``compare`` tests
the per-request samples of each point (a two-sided Mann–Whitney U test: does one run's
distribution sit above the other's?) rather than comparing two medians, which differ between any
two runs. Throughput, goodput, errors and cost have one figure per run and no samples: they are
shown with their change and no test.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from pipeline.apps.bench.files import SavedRun, load_point

WIDE = 200
"""Width of a table written to a pipe or file, so that no column wraps."""


def _console(out: TextIO | None) -> Console:
    out = out or sys.stdout  # looked up at call time: tests and callers may have replaced it
    return Console(file=out, width=None if out.isatty() else WIDE, highlight=False)


def point_name(point: dict[str, Any]) -> str:
    """``concurrency 8``, ``rate 5/s``, ``rate 5/s, cap 8``."""
    rate, cap = point["request_rate"], point.get("max_concurrency")
    if rate == "inf" or (isinstance(rate, float) and math.isinf(rate)):
        return f"concurrency {cap}" if cap is not None else "rate inf"
    name = f"rate {float(rate):g}/s"
    return name if cap is None else f"{name}, cap {cap}"


def error_count(point: dict[str, Any]) -> int:
    if "error_counts" in point:
        return sum(point["error_counts"].values())
    return int(point.get("failed", 0))


def _number(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


REPORT_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("completed", lambda p: str(p["completed"])),
    ("TTFT p50 ms", lambda p: _number(p.get("median_ttft_ms"))),
    ("TTFT p99 ms", lambda p: _number(p.get("p99_ttft_ms"))),
    ("TPOT p50 ms", lambda p: _number(p.get("median_tpot_ms"), 2)),
    ("ITL p50 ms", lambda p: _number(p.get("median_itl_ms"), 2)),
    ("output tok/s", lambda p: _number(p.get("output_throughput"))),
    ("req/s", lambda p: _number(p.get("request_throughput"), 2)),
    ("goodput req/s", lambda p: _number(p.get("request_goodput"), 2)),
    ("errors", lambda p: str(error_count(p))),
    ("cost USD", lambda p: _number(p.get("cost_usd"), 4)),
]


def report(runs: Sequence[SavedRun], out: TextIO | None = None) -> None:
    """One table: a row per load point of each run."""
    table = Table(title="rillet bench report", title_justify="left")
    several = len(runs) > 1
    if several:
        table.add_column("run")
    table.add_column("load")
    for name, _ in REPORT_COLUMNS:
        table.add_column(name, justify="right")
    for run in runs:
        for point in run.points:
            cells = [point_name(point), *(cell(point) for _, cell in REPORT_COLUMNS)]
            table.add_row(*([run.name] if several else []), *cells)
    _console(out).print(table)


def _ok(point: dict[str, Any]) -> list[int]:
    errors = point.get("errors")
    if not isinstance(errors, list):
        return []
    return [i for i, error in enumerate(errors) if not error]


def _tpots(point: dict[str, Any]) -> list[float]:
    ttfts, latencies, outputs = point["ttfts"], point["latencies"], point["output_lens"]
    return [(latencies[i] - ttfts[i]) / (outputs[i] - 1) for i in _ok(point) if outputs[i] > 1]


def _itls(point: dict[str, Any]) -> list[float]:
    return [statistics.fmean(point["itls"][i]) for i in _ok(point) if point["itls"][i]]


@dataclass(frozen=True, slots=True)
class Metric:
    """A latency compared on its per-request samples (seconds, one per completed request)."""

    name: str
    key: str
    samples: Callable[[dict[str, Any]], list[float]]


LATENCIES = (
    Metric("TTFT", "ttft", lambda p: [p["ttfts"][i] for i in _ok(p)]),
    Metric("TPOT", "tpot", _tpots),
    Metric("ITL", "itl", _itls),
    Metric("E2E", "e2el", lambda p: [p["latencies"][i] for i in _ok(p)]),
)

TOTALS: list[tuple[str, int, Callable[[dict[str, Any]], float | None]]] = [
    ("output tok/s", 1, lambda p: p.get("output_throughput")),
    ("request goodput/s", 2, lambda p: p.get("request_goodput")),
    ("errors", 0, error_count),
    ("cost USD", 4, lambda p: p.get("cost_usd")),
]
"""Name, decimals, figure."""


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "–"
    if a == 0:
        return "0" if b == 0 else "new"
    return f"{(b - a) / a * 100:+.1f}%"


@dataclass(frozen=True, slots=True)
class Verdict:
    p: float | None
    text: str


def test_shift(a: Sequence[float], b: Sequence[float], alpha: float, floor: float) -> Verdict:
    """Mann–Whitney U, two-sided: B's distribution above or below A's beyond chance at ``alpha``,
    by at least ``floor`` (a fraction) at the median. The test takes requests as independent, so it
    cannot see what moves a whole run (another process on the machine): a shift of a few per cent
    between two runs of one configuration is then "significant" yet noise, hence the floor."""
    if len(a) < 2 or len(b) < 2:
        return Verdict(None, "too few samples")
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if not p < alpha:
        return Verdict(p, "within noise")
    shift = statistics.median(b) - statistics.median(a)
    if abs(shift) < floor * abs(statistics.median(a)):
        return Verdict(p, f"shift < {floor:.0%}")
    return Verdict(p, "higher" if shift > 0 else "lower")


def _has_samples(point: dict[str, Any]) -> bool:
    return all(
        isinstance(point.get(k), list) for k in ("ttfts", "itls", "latencies", "output_lens", "errors")
    )


def compare(
    a: SavedRun, b: SavedRun, alpha: float = 0.05, floor: float = 0.05, out: TextIO | None = None
) -> list[dict[str, Any]]:
    """Prints A and B side by side per load point; returns the rows (for tests and scripts)."""
    table = Table(
        title=f"rillet bench compare: A = {a.name}, B = {b.name} "
        f"(Mann–Whitney U, two-sided, α = {alpha:g}; a change counts from {floor:.0%} at the median)",
        title_justify="left",
    )
    for name in ("load", "metric", "A p50", "B p50", "change", "A p99", "B p99", "change", "p", "B vs A"):
        table.add_column(name, justify="left" if name in ("load", "metric", "B vs A") else "right")
    rows: list[dict[str, Any]] = []
    in_b = {load_point(p): p for p in b.points}
    in_a = {load_point(p) for p in a.points}
    for pa in a.points:
        pb = in_b.get(load_point(pa))
        if pb is None:
            table.add_row(point_name(pa), "only in A", *[""] * 8)
            continue
        for metric in LATENCIES:
            row = _latency_row(pa, pb, metric, alpha, floor)
            rows.append(row | {"load": point_name(pa)})
            table.add_row(
                point_name(pa), metric.name, _number(row["a_p50"], 2), _number(row["b_p50"], 2),
                _change(row["a_p50"], row["b_p50"]), _number(row["a_p99"], 2), _number(row["b_p99"], 2),
                _change(row["a_p99"], row["b_p99"]), "–" if row["p"] is None else f"{row['p']:.3g}",
                row["verdict"],
            )  # fmt: skip
        for name, digits, value in TOTALS:
            va, vb = value(pa), value(pb)
            rows.append({"load": point_name(pa), "metric": name, "a": va, "b": vb})
            cells = (_number(va, digits), _number(vb, digits), _change(va, vb), *[""] * 4)
            table.add_row("", name, *cells, "one figure each")
    for pb in b.points:
        if load_point(pb) not in in_a:
            table.add_row(point_name(pb), "only in B", *[""] * 8)
    _console(out).print(table)
    return rows


def _latency_row(
    pa: dict[str, Any], pb: dict[str, Any], metric: Metric, alpha: float, floor: float
) -> dict[str, Any]:
    verdict = (
        test_shift(metric.samples(pa), metric.samples(pb), alpha, floor)
        if _has_samples(pa) and _has_samples(pb)
        else Verdict(None, "no per-request samples")
    )
    return {
        "metric": metric.key,
        "a_p50": pa.get(f"median_{metric.key}_ms"),
        "b_p50": pb.get(f"median_{metric.key}_ms"),
        "a_p99": pa.get(f"p99_{metric.key}_ms"),
        "b_p99": pb.get(f"p99_{metric.key}_ms"),
        "p": verdict.p,
        "verdict": verdict.text,
    }
