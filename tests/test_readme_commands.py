"""Every command in the README's and docs/'s shell blocks runs as written, offline, on this machine.

The commands are read from the documents themselves: each one must have a plan in :data:`PLANS`,
so a command added to the docs without one fails here. A plan runs the command in a scratch folder
laid out like the clone (``config``, ``examples``, ``.venv`` and ``../shared`` linked in), with no
API key, so the built-in simulator answers (``RILLET_SIMULATOR=fast`` keeps it at full speed).
Servers are started, probed over HTTP, and stopped; the only change made to them is the port, so
that a test never collides with a server already running. Commands that need Redis or Prometheus
are covered by their own suites against the real servers and are listed in :data:`ELSEWHERE`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import clean_environment, free_port

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
VENV = Path(sys.executable).parents[1]


@dataclass(frozen=True)
class Run:
    """Run to the end; exit status 0, and each of ``creates`` exists afterwards."""

    creates: tuple[str, ...] = ()
    instead: str | None = None
    """The part of a compound line to run, when the rest is planned elsewhere."""


@dataclass(frozen=True)
class Serve:
    """Start, wait for ``ready`` on stderr, fetch ``probe`` (a path) from the URL it printed, stop.

    ``then``: a command run against the server while it is up ({url} is its base URL).
    """

    ready: str
    probe: str = "/"
    then: str | None = None


PLANS: dict[str, Run | Serve] = {
    ".venv/bin/rillet run config/report.toml": Run(creates=("report.md", "report.events.jsonl")),
    '.venv/bin/rillet run --prompt "A history of canals" --max-tokens 4000 --out canals.md': Run(
        creates=("canals.md",)
    ),
    ".venv/bin/rillet run --model claude-haiku-4-5 --verbose": Run(creates=("report.md",)),
    ".venv/bin/rillet replay ../shared/fixtures/sse/sdk-tool_use_response.sse --final-json message.json": Run(
        creates=("message.json",)
    ),
    ".venv/bin/rillet bench --concurrency 1,4,16 --num-prompts 32 --random-output-len 64 --goodput "
    "ttft:300 tpot:10 --result-dir results/base --label base --plot bench.png": Run(
        creates=("bench.png", "results/base/summary.json")
    ),
    ".venv/bin/rillet run": Run(creates=("report.md",)),
    ".venv/bin/rillet run --simulator fast": Run(creates=("report.md",)),
    "./scripts/setup && .venv/bin/rillet run": Run(creates=("report.md",), instead=".venv/bin/rillet run"),
    ".venv/bin/python examples/word_count.py": Run(),
    ".venv/bin/python examples/sqlite_sink.py events.db": Run(creates=("events.db",)),
    ".venv/bin/python examples/simulator_pipeline.py": Run(creates=("events.jsonl",)),
    ".venv/bin/rillet serve": Serve(ready="rillet serve: open "),
    "rillet serve": Serve(ready="rillet serve: open "),
    "rillet serve config/service.toml --port 0": Serve(ready="rillet serve: open "),
    ".venv/bin/rillet simulate --port 8080 --scenario report --ttft-ms 300 --tokens-per-s 80": Serve(
        ready="rillet simulator listening on ",
        probe="/_sim/requests/none",
        # The README's next line, against this server; --max-tokens keeps 80 tokens/s under a minute.
        then="ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=any .venv/bin/rillet run --max-tokens 400",
    ),
}

README_METRICS = "the README's Metrics block, real Prometheus: tests/integration/test_readme_metrics.py"
WORKER_METRICS = "two workers, a port each, real Prometheus: tests/scale/test_worker_metrics.py"
ELSEWHERE: dict[str, str] = {
    "ANTHROPIC_BASE_URL=http://127.0.0.1:8080 ANTHROPIC_API_KEY=any .venv/bin/rillet run": (
        "run against the simulator the line before starts: the simulate plan's `then`"
    ),
    "./scripts/setup --servers && ./scripts/test": "the test suite itself, as .ci/run runs it",
    "prometheus --config.file=config/prometheus.yml --storage.tsdb.path=/tmp/rillet-prometheus "
    "--web.listen-address=127.0.0.1:9090": README_METRICS,
    ".venv/bin/rillet simulate --port 8080 --tokens-per-s 200": README_METRICS,
    "ANTHROPIC_BASE_URL=http://127.0.0.1:8080 ANTHROPIC_API_KEY=any "
    ".venv/bin/rillet run config/metrics.toml": README_METRICS,
    "prometheus-pushgateway --web.listen-address=127.0.0.1:9091 --persistence.file=": (
        "a Pushgateway started clean: tests/integration/test_pushgateway_fixture.py"
    ),
    "rillet worker config/service.toml --redis $REDIS --metrics-port 9108": WORKER_METRICS,
    "rillet worker config/service.toml --redis $REDIS --metrics-port 9109": WORKER_METRICS,
    "RILLET_SERVE_TOKEN=$(openssl rand -hex 24) rillet serve --host 0.0.0.0": (
        "binds every interface: tests/serve/ checks the token rule on loopback instead"
    ),
}
REDIS_BLOCK = "tests/scale/ runs workers, replicas, submit, jobs and takeover on a real redis-server"
"""The README's scale-out block is one session (a Redis server, workers, a replica, a submit)."""


def _commands(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and `&` dropped."""
    joined = re.sub(r"\\\n\s*", "", text)
    lines = (re.sub(r"\s+#.*$", "", line).strip().removesuffix("&").strip() for line in joined.splitlines())
    return [re.sub(r"\s{2,}", " ", line) for line in lines if line and not line.startswith("#")]


def documented() -> list[list[str]]:
    """The commands of every shell block in the README and docs/, block by block."""
    blocks: list[list[str]] = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        blocks += [_commands(block) for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S)]
    return blocks


def test_every_documented_command_has_a_plan() -> None:
    blocks = documented()
    commands = {command for block in blocks if not block[0].startswith("redis-server") for command in block}
    assert {command for command in commands if command not in PLANS and command not in ELSEWHERE} == set()
    assert set(PLANS) | set(ELSEWHERE) <= commands  # no plan for a command the docs no longer have
    assert any(block[0].startswith("redis-server") for block in blocks), REDIS_BLOCK


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A scratch folder laid out like the clone, so that the commands' relative paths hold."""
    root = tmp_path / "rillet"
    root.mkdir()
    for name in ("config", "examples"):
        (root / name).symlink_to(REPO / name)
    (root / ".venv").symlink_to(VENV)
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    return root


def _environment(**extra: str) -> dict[str, str]:
    path = f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return clean_environment(RILLET_SIMULATOR="fast", PATH=path, **extra)


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


RUNS = sorted(command for command, plan in PLANS.items() if isinstance(plan, Run))


@pytest.mark.parametrize("command", RUNS)
def test_a_documented_command_runs(command: str, clone: Path) -> None:
    plan = PLANS[command]
    assert isinstance(plan, Run)
    done = _run(plan.instead or command, clone)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert [name for name in plan.creates if not (clone / name).exists()] == []


@pytest.mark.parametrize("config", sorted(path.name for path in (REPO / "config").glob("*.toml")))
def test_each_config_file_runs(config: str, clone: Path) -> None:
    """Every config runs with the command its own header names (``rillet bench`` for a [bench] one)."""
    header = (REPO / "config" / config).read_text(encoding="utf-8")
    command = "bench" if "[bench]" in header else "run"
    extra = " --num-requests 4 --concurrency 2 --warmup 0" if command == "bench" else ""
    done = _run(f".venv/bin/rillet {command} config/{config}{extra}", clone)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


SERVES = sorted(command for command, plan in PLANS.items() if isinstance(plan, Serve))


def _on_free_port(command: str) -> str:
    port = str(free_port())
    if "--port" in command:
        return re.sub(r"--port \d+", f"--port {port}", command)
    return f"{command} --port {port}"


@pytest.mark.parametrize("command", SERVES)
def test_a_documented_server_starts_answers_and_stops(command: str, clone: Path) -> None:
    plan = PLANS[command]
    assert isinstance(plan, Serve)
    process = subprocess.Popen(
        ["bash", "-c", f"exec {_on_free_port(command)}"],
        cwd=clone,
        env=_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        lines: list[str] = []
        while not (lines and plan.ready in lines[-1]):
            line = process.stderr.readline()
            assert line, f"exited before it was ready: {''.join(lines)}"
            lines.append(line)
        found = re.search(r"http://[\d.]+:\d+", lines[-1])
        assert found is not None, lines[-1]
        url = found.group(0)
        request = urllib.request.Request(url + plan.probe)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status in (200, 404)  # the simulator's truth for an unknown id is a 404 JSON answer
        if plan.then is not None:
            done = _run(plan.then.format(url=url), clone)
            assert done.returncode == 0, done.stderr[-2000:]
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
        process.stderr.close()
    assert status == 0
