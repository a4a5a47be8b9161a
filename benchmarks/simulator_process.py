"""The simulator in a process of its own, for benchmarks whose client must not share its event loop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def simulator_process(*options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m pipeline.apps.simulator --port 0 OPTIONS``: the process and its base URL, stopped
    (terminated, killed if it will not go) on exit."""
    cmd = [sys.executable, "-m", "pipeline.apps.simulator", "--port", "0", *options]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "listening on " not in line:
            raise SystemExit(f"the simulator did not start: {line!r}")
        yield proc, line.split("listening on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
