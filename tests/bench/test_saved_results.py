"""``rillet bench report``, ``compare`` and ``plot`` on results saved by real runs against the simulator."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from pipeline.apps.bench.files import load_run
from pipeline.apps.bench.plot import draw
from pipeline.apps.bench.tables import compare
from tests.bench.conftest import bench as main

FAST = ["--sim-ttft-ms", "5", "--sim-tokens-per-s", "4000"]
SLOW = ["--sim-ttft-ms", "40", "--sim-tokens-per-s", "4000"]


def bench(directory: Path, label: str, simulator: list[str], concurrency: str = "1,2") -> Path:
    argv = ["--num-prompts", "20", "--concurrency", concurrency, "--output-tokens", "12", "--progress", "off"]
    assert (
        main([*argv, "--result-dir", str(directory), "--label", label, "--goodput", "ttft:30", *simulator])
        == 0
    )
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"base": bench(root / "base", "base", FAST), "slow": bench(root / "slow", "slow", SLOW)}


def test_report_is_one_table_with_a_row_per_point(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Both runs' points in one table: load, TTFT, TPOT, ITL, throughput, goodput, errors, cost."""
    assert main(["report", str(runs["base"]), str(runs["slow"])]) == 0
    out = capsys.readouterr().out
    for column in (
        "TTFT p50 ms",
        "TTFT p99 ms",
        "TPOT p50 ms",
        "ITL p50 ms",
        "output tok/s",
        "goodput req/s",
    ):
        assert column in out
    rows = [line for line in out.splitlines() if "concurrency" in line]
    assert len(rows) == 4
    assert [row.split("│")[1].strip() for row in rows] == ["base", "base", "slow", "slow"]
    assert all(row.split("│")[3].strip() == "20" for row in rows)  # completed


def test_compare_with_itself_finds_no_change(runs: dict[str, Path]) -> None:
    """The same samples on both sides: every latency within noise, every change zero."""
    run = load_run(runs["base"])
    rows = compare(run, run, out=io.StringIO())
    latencies = [row for row in rows if "verdict" in row]
    assert len(latencies) == 2 * 4
    assert {row["verdict"] for row in latencies} == {"within noise"}
    assert all(row["p"] == pytest.approx(1.0) for row in latencies)


def test_compare_finds_the_slower_simulators_ttft(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A simulator 35 ms slower to the first token: TTFT higher at every point, beyond noise."""
    assert main(["compare", str(runs["base"]), str(runs["slow"])]) == 0
    out = capsys.readouterr().out
    assert "A = base, B = slow" in out
    rows = compare(load_run(runs["base"]), load_run(runs["slow"]), out=io.StringIO())
    ttft = [row for row in rows if row["metric"] == "ttft"]
    assert [row["load"] for row in ttft] == ["concurrency 1", "concurrency 2"]
    for row in ttft:
        assert row["verdict"] == "higher"
        assert row["p"] < 0.01
        assert row["b_p50"] - row["a_p50"] > 10  # 35 ms apart on an idle machine


def test_compare_needs_two_paths(capsys: pytest.CaptureFixture[str], runs: dict[str, Path]) -> None:
    """One line, exit 2: compare takes exactly A and B; a missing directory is named."""
    assert main(["compare", str(runs["base"])]) == 2
    assert "give two results directories or files (A B), got 1" in capsys.readouterr().err
    assert main(["report", str(runs["base"] / "nowhere")]) == 2
    assert f"{runs['base'] / 'nowhere'}: no such file or directory" in capsys.readouterr().err


def test_plot_overlays_runs_with_a_legend(runs: dict[str, Path], tmp_path: Path) -> None:
    """Two runs in one PNG; every panel drawn, with units, legends naming both runs, axes from zero."""
    out = tmp_path / "p.png"
    assert main(["plot", str(runs["base"]), str(runs["slow"]), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = draw([load_run(runs["base"]), load_run(runs["slow"])])
    try:
        axes = fig.axes
        assert len(axes) == 6
        for ax in axes:
            assert ax.lines or ax.patches, ax.get_title()  # no empty panel
            assert ax.get_xlabel(), ax.get_title()
            assert ax.get_ylabel(), ax.get_title()
            legend = ax.get_legend()
            assert legend is not None, ax.get_title()
        assert [ax.get_ylabel() for ax in axes[:3]] == ["TTFT (ms)", "output tokens/s", "ms per output token"]
        assert [ax.get_xlabel() for ax in axes[3:5]] == ["TTFT (ms)", "ITL (ms)"]
        ttft = axes[0]
        labels = [t.get_text() for t in ttft.get_legend().get_texts()]
        assert {"base · p50", "base · p90", "base · p99", "slow · p50", "slow · p99"} <= set(labels)
        assert "goodput SLO: TTFT ≤ 30 ms" in labels
        assert ttft.get_ylim()[0] == 0
        assert ttft.get_xscale() == "log"
        assert [t.get_text() for t in ttft.get_xticklabels()] == ["1", "2"]
        hist = axes[3]
        assert all(float(tick).is_integer() for tick in hist.get_yticks())
    finally:
        plt.close(fig)


def test_zoom_fits_latency_axes_to_the_data(runs: dict[str, Path]) -> None:
    """--zoom: the TTFT axis starts near the data, not at zero."""
    fig = draw([load_run(runs["slow"])], zoom=True)
    try:
        assert fig.axes[0].get_ylim()[0] > 20
    finally:
        plt.close(fig)
