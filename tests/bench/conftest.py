"""The bench runs against the embedded simulator: no API credentials may leak in from the shell."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def bench(argv: list[str]) -> int:
    """``rillet bench ARGV`` in this process, its exit status as the command would return it."""
    from pipeline.apps import cli

    return cli.main(["bench", *argv])
