"""The scripts in examples/ run as a user runs them, and the README shows the one it says it shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_environment

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env=clean_environment(RILLET_SIMULATOR="fast"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_word_count_counts_what_the_final_message_holds(tmp_path: Path) -> None:
    found = re.fullmatch(
        r"(\d+) words counted while streaming; (\d+) in the final message\n",
        _run("word_count.py", cwd=tmp_path),
    )
    assert found is not None
    assert found.group(1) == found.group(2) != "0"


def test_sqlite_sink_stores_every_event(tmp_path: Path) -> None:
    out = _run("sqlite_sink.py", "events.db", cwd=tmp_path)
    assert re.search(r"^\s+\d+  content_block_delta$", out, re.MULTILINE)
    assert re.search(r"^\s+1  rillet\.end$", out, re.MULTILINE)
    characters = re.search(r"^(\d+) characters of text stored in events\.db$", out, re.MULTILINE)
    assert characters is not None
    assert int(characters.group(1)) > 500
    assert (tmp_path / "events.db").stat().st_size > 0


def test_simulator_pipeline_streams_the_report_and_its_events(tmp_path: Path) -> None:
    out = _run("simulator_pipeline.py", cwd=tmp_path)
    assert re.search(r"^(completed|error|cancelled) [\d.]+$", out, re.MULTILINE)
    assert out.splitlines()[-1].startswith("completed ")
    assert len(out) > 1000
    assert (tmp_path / "events.jsonl").read_text(encoding="utf-8").count("\n") > 10


def test_the_readme_shows_the_simulator_example_as_it_is() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## In code") :]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    assert block.group(1) == (EXAMPLES / "simulator_pipeline.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("script", sorted(path.name for path in EXAMPLES.glob("*.py")))
def test_every_example_is_documented_in_the_readme(script: str) -> None:
    assert f"examples/{script}" in (REPO / "README.md").read_text(encoding="utf-8")
