"""config/alerts.yml is valid (``promtool check rules``) and its alerts fire when they should and
only then (``promtool test rules`` on tests/alerts/alerts_test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
@pytest.mark.parametrize(
    "command",
    [
        ["check", "rules", str(REPO / "config" / "alerts.yml")],
        ["test", "rules", str(REPO / "tests" / "alerts" / "alerts_test.yml")],
    ],
    ids=["check", "test"],
)
def test_alert_rules_pass_promtool(command: list[str]) -> None:
    done = subprocess.run(["promtool", *command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
