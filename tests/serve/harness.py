"""A real server over a real simulator on loopback, and clients that read it as a browser would.

In-process ASGI clients buffer whole bodies and never disconnect, so every test here talks HTTP to
uvicorn on ``127.0.0.1`` port 0.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2

from pipeline.apps.serve import Server, ServeSettings, open_server
from pipeline.apps.simulator import Simulator, SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.stages import StageFactory
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.cost import CostStage
from pipeline.stages.latency import LatencyStage
from pipeline.stages.repetition import RepetitionSettings, RepetitionStage
from tests.serve.sse_parser import Event, SseParser

STAGES: list[StageFactory] = [
    AccumulateStage,
    LatencyStage,
    CostStage,
    functools.partial(RepetitionStage, settings=RepetitionSettings(action="abort")),
]


@dataclass(frozen=True, slots=True)
class Served:
    sim: Simulator
    server: Server

    @property
    def url(self) -> str:
        return self.server.url

    def http(self, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.server.url, timeout=30, **kwargs)


@asynccontextmanager
async def serving(
    sim: SimulatorSettings | None = None, *, send_buffer: int | None = None, **settings: Any
) -> AsyncIterator[Served]:
    """The simulator and a server in front of it, both in the current event loop.

    ``send_buffer``: the server's kernel send buffer per connection, small to make a stall quick.
    """
    serve_settings = ServeSettings(**({"port": 0, "simulated": True} | settings))
    sock = None
    if send_buffer is not None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        sock.bind(("127.0.0.1", 0))
    async with open_simulator(sim or SimulatorSettings()) as simulator:
        client = make_client(api_key="sim", base_url=simulator.base_url)
        async with client, open_server(serve_settings, client=client, stages=STAGES, sock=sock) as server:
            yield Served(simulator, server)


async def start(http: httpx2.AsyncClient, prompt: str = "rivers", **body: Any) -> str:
    """Starts a stream; its id."""
    response = await http.post("/api/streams", json={"prompt": prompt, **body})
    assert response.status_code == 201, response.text
    stream_id: str = response.json()["id"]
    return stream_id


@dataclass(slots=True)
class Reading:
    """What one connection got: status, events, the raw body."""

    status: int
    events: list[Event] = field(default_factory=list)
    body: bytes = b""
    retry: int | None = None

    def ids(self) -> list[int]:
        return [int(event.last_event_id) for event in self.events]

    def text(self) -> str:
        return stream_text(self.events)


async def read_events(
    http: httpx2.AsyncClient, stream_id: str, headers: Mapping[str, str] | None = None, query: str = ""
) -> Reading:
    """Reads one connection to its end, as EventSource would parse it."""
    parser = SseParser()
    async with http.stream("GET", f"/api/streams/{stream_id}/events{query}", headers=headers) as response:
        reading = Reading(response.status_code)
        async for chunk in response.aiter_bytes():
            reading.body += chunk
            reading.events += parser.feed(chunk)
    reading.retry = parser.retry
    return reading


def stream_text(events: list[Event]) -> str:
    """The text the events carry, as the page assembles it (a ``reset`` replaces what came before)."""
    blocks: dict[int, list[str]] = {}
    for event in events:
        data = json.loads(event.data)
        if event.type == "reset":
            blocks = {}
            for index, block in enumerate(data["message"].get("content", [])):
                if block["type"] == "text":
                    blocks[index] = [block["text"]]
        elif event.type == "content_block_delta" and data["delta"]["type"] == "text_delta":
            blocks.setdefault(data["index"], []).append(data["delta"]["text"])
    return "".join("".join(parts) for _, parts in sorted(blocks.items()))


async def until_idle(served: Served) -> None:
    """Until no stream runs: a run ends just after its last frame, a moment no task-level primitive shows."""
    with anyio.fail_after(5):
        while served.server.registry.statistics().running:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def status(http: httpx2.AsyncClient, stream_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/streams/{stream_id}")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state
