"""The README's Metrics section, run as a newcomer would: its commands, then its PromQL on the graph page.

The commands are read from the README itself, with only ports and paths swapped for free ones, so
the README cannot drift from what is checked. The graph page runs range queries, so each query is
asked over the span of the run, as the page would draw it; each must give a series with values.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import clean_environment, free_port

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
"""Seconds a server may take to listen, and a query to return what the run reported."""


def metrics_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Metrics\n")
    return readme[start : readme.index("\n### ", start + 1)]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def commands(block: str) -> list[str]:
    """Shell lines, continuations joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listened on port {port} within {DEADLINE} s")


def query_range(prometheus: str, promql: str, start: float) -> list[dict[str, Any]]:
    params = {"query": promql, "start": start, "end": time.time(), "step": 1}
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{urllib.parse.urlencode(params)}") as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def test_readme_queries_return_data_after_the_readme_commands(
    tmp_path: Path, background: list[subprocess.Popen[bytes]]
) -> None:
    section = metrics_section()
    [shell] = blocks(section, "bash")
    [promql] = blocks(section, "promql")
    ports = {"9090": free_port(), "8080": free_port(), "9464": free_port()}
    for name in ("prometheus.yml", "metrics.toml"):
        text = (REPO / "config" / name).read_text()
        (tmp_path / name).write_text(text.replace("127.0.0.1:9464", f"127.0.0.1:{ports['9464']}"))
    swaps = {
        "config/prometheus.yml": str(tmp_path / "prometheus.yml"),
        "config/metrics.toml": str(tmp_path / "metrics.toml"),
        "/tmp/rillet-prometheus": str(tmp_path / "tsdb"),
        ".venv/bin/rillet": str(Path(sys.executable).parent / "rillet"),
        **{old: str(new) for old, new in ports.items()},
    }
    pattern = re.compile("|".join(re.escape(old) for old in sorted(swaps, key=len, reverse=True)))
    started = time.time()
    lines = commands(shell)
    with open(tmp_path / "servers.log", "wb") as log:
        for line in lines[:-1]:
            assert line.endswith("&"), f"only the last README command may run in the foreground: {line}"
            argv = [pattern.sub(lambda m: swaps[m.group()], word) for word in shlex.split(line[:-1])]
            background.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        wait_for_port(ports["9090"])
        wait_for_port(ports["8080"])
        words = [pattern.sub(lambda m: swaps[m.group()], word) for word in shlex.split(lines[-1])]
        assignments = [word for word in words if re.fullmatch(r"[A-Z_]+=.*", word)]
        env = clean_environment(**dict(word.split("=", 1) for word in assignments))
        run = subprocess.run(
            words[len(assignments) :], env=env, cwd=tmp_path, capture_output=True, timeout=300, check=False
        )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    prometheus = f"http://127.0.0.1:{ports['9090']}"
    queries = [line for line in promql.splitlines() if line.strip() and not line.startswith("#")]
    assert len(queries) >= 4
    for promql_query in queries:
        series = query_range(prometheus, promql_query, started)
        values = [float(v) for s in series for _, v in s["values"] if math.isfinite(float(v))]
        assert values, f"{promql_query} gave no value over the run: {series}"
        if "rillet_tokens_total" in promql_query or "rillet_cost_usd_total" in promql_query:
            assert max(values) > 0, f"{promql_query} never rose: {series}"
