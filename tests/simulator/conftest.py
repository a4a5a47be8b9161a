"""Fixtures for the simulator tests: a running simulator and the recorded streams beside the repo."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.apps.simulator._server import Simulator

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
SSE_FIXTURES = SHARED / "fixtures" / "sse"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with open_simulator(SimulatorSettings()) as running:
        yield running
