"""Where requests go: the real API when configured, else the embedded simulator.

Read from the environment here, at the edge, and nowhere deeper: ``ANTHROPIC_API_KEY`` (or
``ANTHROPIC_AUTH_TOKEN``) and ``ANTHROPIC_BASE_URL``. With neither a key nor a base URL, a fresh
machine still works: the simulator starts in-process on a free loopback port, and one line on
stderr says so. A base URL without a key is a configuration error, refused before any request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.simulator import SimulatorSettings, open_simulator

SIMULATOR_KEY = "rillet-simulator"
"""Sent to the embedded simulator, which only checks that a credential is present."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An API address and its credential; ``repr`` never shows the key."""

    base_url: str | None
    api_key: str | None
    simulated: bool

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, simulated={self.simulated})"


@asynccontextmanager
async def open_endpoint(
    base_url: str | None = None, *, simulator: SimulatorSettings | None = None
) -> AsyncIterator[Endpoint]:
    """The configured endpoint, or a simulator running for the duration of the block."""
    api_key = os.environ.get("ANTHROPIC_API_KEY") or None
    where = "api.base_url" if base_url else "ANTHROPIC_BASE_URL"
    base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
    if api_key or os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        yield Endpoint(base_url, api_key, simulated=False)
        return
    if base_url:
        # The SDK would only fail at the first request, deep in a task group, with its own wording.
        raise ConfigError(
            f"{where} is set ({base_url}) but no key is: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"
        )
    async with open_simulator(simulator or SimulatorSettings()) as sim:
        print(
            "rillet: no ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL set: "
            f"using the built-in simulator at {sim.base_url}",
            file=sys.stderr,
        )
        yield Endpoint(sim.base_url, SIMULATOR_KEY, simulated=True)
