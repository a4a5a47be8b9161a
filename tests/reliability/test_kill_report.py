"""``kill -9`` of ``rillet run`` mid-report: the ``.part`` file holds what stdout had shown.

A real ``rillet run`` process against the simulator process, killed outright (as the OOM killer
would), then its ``report.md.part`` read from the file system.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.conftest import SimulatorProcess, start_report

SHOWN = 600
"""Characters stdout must have shown before the kill (well under the 8 KiB buffer of a text file)."""


def test_a_killed_run_leaves_what_stdout_showed_in_the_part_file(
    tmp_path: Path, simulator_process: SimulatorProcess
) -> None:
    """Everything stdout had shown before the last few batches is in the ``.part`` file, in order."""
    base_url = simulator_process("--tokens-per-s", "150")
    process = start_report(tmp_path, base_url, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    shown = ""
    while len(shown) < SHOWN:
        chunk = process.stdout.read(20)
        assert chunk, "the report ended before the kill"
        shown += chunk
    # Many linger windows later (the stream keeps going at 150 tokens/s): then kill outright.
    more = ""
    while len(more) < SHOWN:
        chunk = process.stdout.read(20)
        assert chunk, "the report ended before the kill"
        more += chunk
    process.send_signal(signal.SIGKILL)
    rest = process.stdout.read()
    process.wait(10)
    process.stdout.close()
    printed = shown + more + rest
    kept = (tmp_path / "report.md.part").read_text("utf-8")
    assert printed.startswith(kept)
    assert len(kept) >= len(shown), f"the .part file held {len(kept)} characters of {len(printed)} shown"
