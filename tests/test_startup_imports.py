"""Each command imports only what it uses: ``rillet --help`` must not take seconds loading the SDK.

Each case runs in a fresh interpreter (the test process has everything loaded already) and lists
which heavy packages the command left in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "anthropic",
    "matplotlib",
    "uvicorn",
    "starlette",
    "coredis",
    "pipeline.wire.transport",
    "opentelemetry.sdk",
)

PROBE = """
import json, sys
from pipeline.apps.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


def _loaded(*argv: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},  # no Redis, no API: the commands fail fast, after importing
    )
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


UNREACHABLE = "redis://127.0.0.1:1"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], []),
        ([], []),
        (["jobs", "--help"], ["coredis"]),
        (["jobs", "--redis", UNREACHABLE], ["coredis"]),
        (["submit", "--redis", UNREACHABLE, "--prompt", "Rivers."], ["coredis"]),
        (["run", "--help"], []),
        (["replay", "--help"], []),
        (["simulate", "--help"], ["starlette", "uvicorn"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_command_loads_only_what_it_uses(argv: list[str], expected: list[str]) -> None:
    assert _loaded(*argv) == expected


def test_the_library_front_loads_a_name_on_first_use() -> None:
    code = (
        "import sys, pipeline; before = 'anthropic' in sys.modules; from pipeline import Pipeline; "
        "print(before, 'anthropic' in sys.modules, Pipeline.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "pipeline.runner"]


@pytest.mark.parametrize(("otel", "loaded"), [(False, "False"), (True, "True")])
def test_the_opentelemetry_sdk_is_imported_only_when_otel_is_enabled(otel: bool, loaded: str) -> None:
    code = (
        "import sys; from pathlib import Path; from pipeline.apps.shared.build import build_sinks; "
        "from pipeline.config import parse_config; "
        f"config = parse_config({{'otel': {{'enabled': {otel}}}}}, Path('run.toml')); "
        "build_sinks(config, verbose=False, status_line=False); print('opentelemetry.sdk' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [loaded]
