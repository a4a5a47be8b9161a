"""The API key never leaves the process: not in any output, file, event or metric."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import SimulatorProcess, clean_environment
from tests.integration.conftest import Server

FAKE_KEY = "sk-ant-api03-rillet-test-key-must-never-leak-0123456789abcdef"


def test_the_api_key_appears_in_no_output(
    tmp_path: Path, simulator_process: SimulatorProcess, pushgateway: Server
) -> None:
    """`rillet run --verbose` with file, stdout and metrics sinks: no trace of the key anywhere."""
    base_url = simulator_process()
    config = tmp_path / "job.toml"
    config.write_text(
        """
[request]
max_tokens = 400

[[sinks]]
type = "stdout"
verbose = true

[[sinks]]
type = "file"
path = "report.md"

[[sinks]]
type = "file"
path = "events.jsonl"
mode = "jsonl"

[[sinks]]
type = "prometheus"
address = "127.0.0.1:0"
pushgateway = "PUSHGATEWAY"
job = "secrets"
""".replace("PUSHGATEWAY", pushgateway.address),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.apps", "run", str(config), "--verbose"],
        cwd=tmp_path,
        env=clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=FAKE_KEY),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = {path.name: path.read_text(encoding="utf-8") for path in tmp_path.iterdir() if path.is_file()}
    assert {"report.md", "events.jsonl"} <= written.keys()
    assert "rillet.headers" in written["events.jsonl"]
    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'job="secrets"' in metrics
    assert "rillet_tokens_total" in metrics
    for name, text in {"stdout": done.stdout, "stderr": done.stderr, "metrics": metrics, **written}.items():
        assert FAKE_KEY not in text, name
        assert FAKE_KEY[-16:] not in text, name
