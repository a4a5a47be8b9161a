"""Real Prometheus and Pushgateway processes on free loopback ports, with temporary config and storage.

Each fixture starts its server, waits (bounded) until ``/-/ready`` answers, and stops it at teardown.
Debian's ``prometheus`` and ``prometheus-pushgateway`` packages provide the binaries (``.ci/run``
installs them); without them the tests that need them are skipped, and say why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import free_port

READY_TIMEOUT = 30.0
"""Seconds a server may take to answer ``/-/ready``: Prometheus replays an empty TSDB in well under 5."""

POLL = 0.05
"""Seconds between readiness checks; spent waiting on the process, so an early exit is seen at once."""


@dataclass(frozen=True)
class Server:
    """A running server process and where it listens."""

    url: str
    address: str
    process: subprocess.Popen[bytes]


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name!r})")
    return path


def _start(argv: Sequence[str], address: str, log: IO[bytes], log_path: Path) -> Server:
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://{address}", address, process)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError):
            pass
        try:
            process.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            continue
        break
    stop(process)
    pytest.fail(f"{argv[0]} was not ready within {READY_TIMEOUT} s; its log:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[Sequence[str]], Server]]:
    """Starts Prometheus scraping ``targets`` (``host:port``) every second, job ``rillet``."""
    binary = _binary("prometheus")
    servers: list[Server] = []
    with open(tmp_path / "prometheus.log", "wb") as log:

        def start(targets: Sequence[str]) -> Server:
            config = tmp_path / "prometheus.yml"
            config.write_text(
                json.dumps(
                    {
                        "global": {
                            "scrape_interval": "1s",
                            "scrape_timeout": "1s",
                            "evaluation_interval": "1s",
                        },
                        "scrape_configs": [
                            {"job_name": "rillet", "static_configs": [{"targets": list(targets)}]}
                        ],
                    }
                )
            )
            address = f"127.0.0.1:{free_port()}"
            argv = [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={address}",
                "--log.level=warn",
            ]
            servers.append(_start(argv, address, log, tmp_path / "prometheus.log"))
            return servers[-1]

        try:
            yield start
        finally:
            for server in servers:
                stop(server.process)


def pushgateway_argv(address: str) -> list[str]:
    """A Pushgateway that starts clean and keeps groups in memory only.

    Debian's build persists groups by default (``--persistence.file`` defaults to
    ``/var/lib/prometheus/pushgateway.data``), so every test run would find the groups of the last
    one; the empty ``--persistence.file=`` turns persistence off.
    """
    return [_binary("prometheus-pushgateway"), f"--web.listen-address={address}", "--persistence.file="]


@pytest.fixture
def start_pushgateway(tmp_path: Path) -> Iterator[Callable[[], Server]]:
    """Starts Pushgateways with :func:`pushgateway_argv` (persistence off); stops them at teardown."""
    servers: list[Server] = []
    with open(tmp_path / "pushgateway.log", "wb") as log:

        def start() -> Server:
            address = f"127.0.0.1:{free_port()}"
            argv = [*pushgateway_argv(address), "--log.level=warn"]
            servers.append(_start(argv, address, log, tmp_path / "pushgateway.log"))
            return servers[-1]

        try:
            yield start
        finally:
            for server in servers:
                stop(server.process)


@pytest.fixture
def pushgateway(start_pushgateway: Callable[[], Server]) -> Server:
    """A Pushgateway started with ``--persistence.file=`` (empty): persistence off, so it starts
    clean, whatever Debian's default or an earlier run left in its data file."""
    return start_pushgateway()
