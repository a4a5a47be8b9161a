"""Fixtures for the simulator tests: a running simulator and the recorded streams beside the repo."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.simulator import SimulatorSettings, open_simulator
from pipeline.simulator._server import Simulator

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


def parse_sse(raw: bytes | str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of each complete event in a raw SSE body."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    out: list[tuple[str, dict[str, Any]]] = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, None
        for line in chunk.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name is not None and data is not None:
            out.append((name, data))
    return out


def fixture_events(name: str) -> list[tuple[str, dict[str, Any]]]:
    return parse_sse((SSE_FIXTURES / name).read_text())


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every dict key in ``value`` (lists are not entered)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else k
            paths.add(path)
            paths |= key_paths(v, path)
    return paths


def collapse(names: list[str]) -> list[str]:
    """Event names with runs of the same name collapsed to one."""
    out: list[str] = []
    for n in names:
        if not out or out[-1] != n:
            out.append(n)
    return out
