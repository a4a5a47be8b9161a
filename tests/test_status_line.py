"""The live status line: drawn on stderr when it is a terminal, never when it is not."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import SimulatorProcess, clean_environment


def run_report(tmp_path: Path, base_url: str, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.apps", "run", "--max-tokens", "600"],
        cwd=tmp_path,
        env=clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="k", COLUMNS="100", LINES="30"),
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def test_a_terminal_gets_a_live_status_line(tmp_path: Path, simulator_process: SimulatorProcess) -> None:
    """On a terminal: the last row shows tokens, tokens/s, cost and elapsed, redrawn while streaming."""
    base_url = simulator_process("--tokens-per-s", "400")
    controller, terminal = pty.openpty()
    process = run_report(tmp_path, base_url, terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    process.communicate(timeout=60)
    assert process.returncode == 0
    screen = seen.decode()
    draws = [part for part in screen.split("\x1b7") if "tok/s" in part]
    assert len(draws) >= 3, screen
    assert "\x1b[1;29r" in screen, "the status row is kept out of the scroll region"
    assert "rillet: completed" in draws[-1]
    assert "tokens" in draws[-1]
    assert "$" in draws[-1]


def test_no_status_line_when_stderr_is_not_a_terminal(
    tmp_path: Path, simulator_process: SimulatorProcess
) -> None:
    """Redirected stderr: plain lines only, no escape sequences."""
    base_url = simulator_process()
    process = run_report(tmp_path, base_url, subprocess.PIPE)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert b"\x1b" not in stderr
    assert b"tok/s" not in stderr
