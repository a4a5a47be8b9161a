"""Ctrl-C and SIGTERM during `rillet run`: the stream stops, sinks flush, the partial report is marked."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import SimulatorProcess, start_report


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_stops_the_stream_and_keeps_the_partial_report(
    tmp_path: Path, simulator_process: SimulatorProcess, signum: signal.Signals, status: int
) -> None:
    """Mid-report: exit 130/143, summary line, the partial text kept in the file with a marker."""
    base_url = simulator_process("--tokens-per-s", "300")
    process = start_report(tmp_path, base_url)
    assert process.stdout is not None
    received = ""
    while len(received) < 300:
        chunk = process.stdout.read(50)
        assert chunk, "the report stopped before the signal"
        received += chunk
    process.send_signal(signum)
    # Read on through the same text wrapper: communicate() reads the raw pipe and would skip what
    # the wrapper had already buffered. stderr holds a few lines, so it cannot fill its pipe.
    rest = process.stdout.read()
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait(30)
    process.stdout.close()
    process.stderr.close()
    assert process.returncode == status, stderr
    summary = stderr.strip().splitlines()[-1]
    assert summary.startswith("rillet: cancelled"), stderr
    assert signum.name in summary
    assert "Traceback" not in stderr
    printed = received + rest
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.startswith(printed.rstrip("\n"))
    assert "<!-- rillet: incomplete -->" in report
    assert "cancelled" in report[len(printed.rstrip("\n")) :]
    assert not list(tmp_path.glob("*.part"))
