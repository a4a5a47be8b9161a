"""Shared fixtures: the anyio backend, and where the shared fixtures live beside the clone."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

os.environ["RILLET_SIMULATOR"] = "fast"
"""The embedded simulator's realistic pace would make the suite take hours: every test, and every
process a test starts, gets the full-speed one unless it asks otherwise."""

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "sse"


@pytest.fixture
def anyio_backend() -> str:
    """aiofiles is asyncio-only, so the suite pins asyncio on purpose."""
    return "asyncio"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The recorded SSE streams and their expected results (``shared/fixtures/sse``)."""
    return FIXTURES


SimulatorProcess = Callable[..., str]


@pytest.fixture
def simulator_process() -> Iterator[SimulatorProcess]:
    """Starts ``rillet simulate`` in its own process with the given options; returns its base URL."""
    started: list[subprocess.Popen[str]] = []

    def start(*options: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.apps.simulator", "--port", "0", *options],
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, f"the simulator did not start: {line!r}"
        return found.group(0)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment without any ANTHROPIC_* variable, as on a fresh machine, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")} | extra


def start_report(cwd: Path, base_url: str, *, stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """A real ``rillet run`` of an 8,000-token report against ``base_url``, writing into ``cwd``,
    its stdout piped: for tests that stop or kill it mid-report."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.apps", "run", "--max-tokens", "8000"],
        cwd=cwd,
        env=clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test-key"),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@pytest.fixture
def broken_pipe() -> Iterator[TextIO]:
    """The write end of a real pipe whose reader is gone, as under ``rillet run | head``: Python
    ignores SIGPIPE, so writes raise EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    pipe = open(write_end, "w", encoding="utf-8")
    yield pipe
    try:
        pipe.close()
    except BrokenPipeError:
        pass  # the buffered text still cannot go anywhere; the descriptor is closed regardless


def free_port() -> int:
    """A port free on loopback now (the server binds it a moment later; nothing else here races)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
