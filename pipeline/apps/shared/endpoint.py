"""Where requests go: the real API when configured, else the embedded simulator.

Read from the environment here, at the edge, and nowhere deeper: ``ANTHROPIC_API_KEY`` (or
``ANTHROPIC_AUTH_TOKEN``) and ``ANTHROPIC_BASE_URL``. With neither a key nor a base URL, a fresh
machine still works: the simulator starts in-process on a free loopback port, and one line on
stderr says so. It streams at Claude's pace unless ``--simulator fast`` or ``RILLET_SIMULATOR=fast``
asks for full speed (see :data:`pipeline.apps.simulator.PRESETS`).
A base URL without a key is a configuration error, refused before any request.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # the simulator loads the SDK's types: `rillet submit` shares run's options
    from pipeline.apps.simulator import SimulatorSettings

SIMULATOR_ENV = "RILLET_SIMULATOR"
DEFAULT_SIMULATOR = "claude"

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


def simulator_preset(name: str | None = None) -> SimulatorSettings:
    """The embedded simulator's settings: ``--simulator NAME``, else ``$RILLET_SIMULATOR``, else claude."""
    from pipeline.apps.simulator import PRESETS

    chosen = name or os.environ.get(SIMULATOR_ENV) or DEFAULT_SIMULATOR
    if chosen not in PRESETS:
        where = "--simulator" if name else SIMULATOR_ENV
        raise ConfigError(f"{where}: unknown simulator {chosen!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[chosen]


def add_simulator_argument(parser: argparse.ArgumentParser) -> None:
    """``--simulator``, shared by ``run`` and ``serve``; checked where it is used (exit 2)."""
    parser.add_argument(
        "--simulator",
        metavar="PACE",
        help="without an API key: 'claude' (default: its pace and report length) or 'fast' "
        "(full speed); or set RILLET_SIMULATOR",
    )


def _pace(settings: SimulatorSettings) -> str:
    if settings.tokens_per_s <= 0:
        return "at full speed"
    return (
        f"at Claude's pace, about {settings.tokens_per_s:g} tokens/s (--simulator fast or "
        f"{SIMULATOR_ENV}=fast for full speed)"
    )


@asynccontextmanager
async def open_endpoint(
    base_url: str | None = None, *, simulator: SimulatorSettings | None = None
) -> AsyncIterator[Endpoint]:
    """The configured endpoint, or a simulator running for the duration of the block.

    ``simulator``: the simulator's settings (default: :func:`simulator_preset`'s)."""
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
    from pipeline.apps.simulator import open_simulator

    settings = simulator or simulator_preset()
    async with open_simulator(settings) as sim:
        print(
            "rillet: no ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL set: "
            f"using the built-in simulator at {sim.base_url}, {_pace(settings)}",
            file=sys.stderr,
        )
        yield Endpoint(sim.base_url, SIMULATOR_KEY, simulated=True)
