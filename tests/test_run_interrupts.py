"""Ctrl+C at any moment of ``rillet run``: never a hang, never a traceback; a second one exits at once.

Real processes: ``rillet run`` (``python -m pipeline.apps``), the simulator process, and a FIFO
nobody reads, which holds the run in its file sink's open before the stream listens for signals.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SimulatorProcess, clean_environment

IMPORTED = "rillet-test: imported"
STARTED = [
    sys.executable,
    "-c",
    f"import sys, pipeline.apps.cli as cli; print({IMPORTED!r}, file=sys.stderr, flush=True); "
    "sys.exit(cli.main())",
]
"""``rillet`` as its console script runs it, saying when its imports are done (the moment its
``main()`` starts: until the imports are lazy, a signal before it is Python's own)."""


def blocked_in_open(pid: int) -> bool:
    """A thread of the process waits in the kernel for a FIFO's reader."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/wchan") as wchan:
                if wchan.read() == "wait_for_partner":
                    return True
        except OSError:
            continue
    return False


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    """The run is stuck before the stream listens (the report's FIFO has no reader): the first
    Ctrl+C is held for it, the second ends the process at once with 130, quietly."""
    fifo = tmp_path / "report.md"
    os.mkfifo(fifo)
    env = clean_environment(ANTHROPIC_BASE_URL="http://127.0.0.1:9", ANTHROPIC_API_KEY="test-key")
    process = subprocess.Popen(
        [*STARTED, "run", "--out", str(fifo)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not blocked_in_open(process.pid):
            assert time.monotonic() < deadline, "the run never reached the file sink's open"
            assert process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None, "the first Ctrl+C waits for the stream to stop"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert process.returncode == 130
    assert "Traceback" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_any_moment_of_start_up_ends_the_run(
    tmp_path: Path, simulator_process: SimulatorProcess, signum: signal.Signals
) -> None:
    """Signals spread over start-up (arguments, configuration, the event loop, the pipeline being
    built) and the first tokens: every run ends within seconds with 128 + the signal, no traceback."""
    base_url = simulator_process("--tokens-per-s", "40")
    env = clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test-key")
    rng = random.Random(14)
    for attempt in range(8):
        process = subprocess.Popen(
            [*STARTED, "run", "--max-tokens", "2000"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        assert process.stderr.readline().strip() == IMPORTED
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signum)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=5)
            pytest.fail(f"try {attempt}: the run hung after {signum.name}")
        assert process.returncode == 128 + signum, f"try {attempt}: {stderr}"
        assert "Traceback" not in stderr, f"try {attempt}: {stderr}"
