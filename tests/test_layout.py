"""The layout's rules (docs/architecture.md): the import contracts hold, and each one can fail.

``lint-imports`` reads the contracts from ``pyproject.toml``; each case below breaks one rule in a
copy of the tree and checks that the contract names it. The other tests keep the contracts whole
(every module under a rule) and the error tree true, and the moved paths working, with a warning.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
DEPRECATED = {"pipeline.bench", "pipeline.simulator", "sinks.sse_log"}
"""The forwarding modules of moved paths (pipeline/deprecated.py): under no contract."""


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_contracts_hold() -> None:
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in done.stdout


BREAKS = {
    "The library imports no application and no sink": ("pipeline/events.py", "import sinks.file"),
    "Sinks import only the library": ("sinks/file.py", "import pipeline.apps.scale"),
    "Applications in layers: each imports only those below it": (
        "pipeline/apps/embedded_server.py",
        "import pipeline.apps.cli",
    ),
    "Other code reaches scale only through its __init__": (
        "pipeline/apps/serve/_app.py",
        "import pipeline.apps.scale.frames",
    ),
    "A _private module is imported only inside its own package": (
        "pipeline/apps/serve/_app.py",
        "import pipeline.apps.scale._redis",
    ),
    "No cycle between the modules of any package": ("pipeline/stages/filter.py", "import pipeline.runner"),
}


@pytest.mark.parametrize("contract", sorted(BREAKS))
def test_each_contract_fails_when_its_rule_is_broken(contract: str, tmp_path: Path) -> None:
    for part in ("pipeline", "sinks"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    path, line = BREAKS[contract]
    with (tmp_path / path).open("a") as module:
        module.write(f"\n{line}\n")

    done = _lint(tmp_path)

    assert done.returncode == 1
    assert f"{contract} BROKEN" in done.stdout  # an import up a layer also closes a cycle: both say so


def _children(package: str) -> set[str]:
    """The modules and packages directly under ``package``, by dotted name."""
    found = {f"{package}.{path.stem}" for path in (REPO / package).glob("*.py") if path.stem != "__init__"}
    return found | {f"{package}.{path.parent.name}" for path in (REPO / package).glob("*/__init__.py")}


def _sources(name: str) -> set[str]:
    (contract,) = (c for c in CONTRACTS if c["name"] == name)
    return set(contract["source_modules"])


def test_every_library_module_is_under_the_library_contract() -> None:
    library = _children("pipeline") - {"pipeline.apps", "pipeline.deprecated"} - DEPRECATED
    assert _sources("The library imports no application and no sink") == library


def test_every_sink_module_is_under_the_sinks_contract() -> None:
    assert _sources("Sinks import only the library") == _children("sinks") - DEPRECATED


def _exception_classes() -> set[str]:
    """Every class in pipeline/ and sinks/ that derives, directly or not, from an exception."""
    bases: dict[str, set[str]] = {}
    for path in [*REPO.glob("pipeline/**/*.py"), *REPO.glob("sinks/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
    exceptions = {"Exception", "TypeError"}
    while grown := {name for name, parents in bases.items() if parents & exceptions} - exceptions:
        exceptions |= grown
    return exceptions - {"Exception", "TypeError"}


def test_every_exception_is_in_the_tree_atop_errors() -> None:
    import pipeline.errors

    tree = pipeline.errors.__doc__ or ""
    assert {"RilletError", "Fenced", "Busy", "ApiError"} <= _exception_classes()
    assert {
        name for name in _exception_classes() if not re.search(rf"── {name} |^    {name}$", tree, re.M)
    } == set()


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("pipeline.simulator", "pipeline.apps.simulator", "open_simulator"),
        ("pipeline.bench", "pipeline.apps.bench", "run_bench"),
        ("sinks.sse_log", "pipeline.apps.shared.frame_log", "FrameLog"),
    ],
)
def test_a_moved_name_still_imports_from_its_old_path_with_a_warning(old: str, new: str, name: str) -> None:
    import importlib

    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        moved = getattr(importlib.import_module(old), name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert moved is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize(
    ("old", "usage", "command"),
    [
        ("pipeline.bench", "usage: rillet bench", "rillet bench"),
        ("pipeline.simulator", "usage: python -m pipeline.apps.simulator", "rillet simulate"),
    ],
)
def test_python_m_of_a_moved_command_still_runs_it_with_a_warning(old: str, usage: str, command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", old, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith(usage)
    assert f"DeprecationWarning: python -m {old} is deprecated: use `{command}`" in done.stderr
