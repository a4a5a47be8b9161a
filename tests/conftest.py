"""Shared fixtures: the anyio backend, and where the shared fixtures live beside the clone."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "sse"


@pytest.fixture
def anyio_backend() -> str:
    """aiofiles is asyncio-only, so the suite pins asyncio on purpose."""
    return "asyncio"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The recorded SSE streams and their expected results (``shared/fixtures/sse``)."""
    return FIXTURES
