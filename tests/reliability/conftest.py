"""A simulator and an SDK client on loopback for the fault-injection tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from anthropic import AsyncAnthropic
from fault_harness import SIMULATOR

from pipeline.apps.simulator import Simulator, open_simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with open_simulator(SIMULATOR) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="sim", max_retries=0) as made:
        yield made
