"""The repository holds every file its configs and docs need: none is hidden by ``.gitignore``.

A too-broad pattern (``report.md``) once matched ``config/prompts/report.md``, so the README's first
config command failed on every fresh clone while it worked in the checkout that wrote it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("benchmarks", "config", "docs", "examples", "pipeline", "scripts", "sinks", "tests")
CACHES = ("__pycache__/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/")


def _git(*args: str, stdin: str | None = None) -> list[str]:
    done = subprocess.run(["git", *args], cwd=REPO, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr  # check-ignore exits 1 when nothing matched
    return done.stdout.splitlines()


def _tracked() -> list[str]:
    return _git("ls-files")


def test_no_tracked_file_matches_an_ignore_pattern() -> None:
    """A file that is only in git because someone forced it in would be lost by the next copy."""
    assert _git("check-ignore", "--no-index", "--stdin", stdin="\n".join(_tracked())) == []


def test_no_file_under_a_source_folder_is_ignored() -> None:
    ignored = _git("ls-files", "--others", "--ignored", "--exclude-standard", "--", *SOURCE_DIRS)
    assert [path for path in ignored if not any(cache in path for cache in CACHES)] == []


@pytest.mark.parametrize("name", ["report.md", "canals.md", "events.jsonl", "bench.png", "brief.md"])
def test_outputs_are_ignored_only_at_the_root(name: str) -> None:
    """What the README's commands write is ignored where they write it, and nowhere else."""
    at_root = _git("check-ignore", "--no-index", name)
    inside = _git("check-ignore", "--no-index", *(f"{folder}/{name}" for folder in SOURCE_DIRS))
    assert (at_root, inside) == ([name], [])


@pytest.mark.parametrize("config", sorted(path.name for path in (REPO / "config").glob("*.toml")))
def test_every_file_a_config_names_is_committed(config: str) -> None:
    prompt_file = load_config(REPO / "config" / config).request.prompt_file
    if prompt_file is not None:
        assert prompt_file.resolve().relative_to(REPO).as_posix() in _tracked()


def test_the_license_pyproject_names_is_there() -> None:
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert 'license = "MIT"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")
