"""The stamps TTFT is measured between, checked against the simulator's own: never before the truth.

The client's clock starts just before the request's first byte goes to the socket, and each event
is stamped with the kernel's arrival time of the bytes completing it; the simulator stamps a
request when its first bytes arrive. Causality bounds every one: the send precedes the server's
receipt, and no event can arrive before the server wrote it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.events import AttemptStarted, Item, ResponseHeaders
from pipeline.source.stream import Source

pytestmark = pytest.mark.anyio

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Say something."}],
}


async def test_the_stamps_bracket_the_servers_truth() -> None:
    """AttemptStarted ≤ send ≤ server receipt, and each event's stamp ≥ the server's write of it."""
    settings = SimulatorSettings(scenario="report", ttft_ms=20, tokens_per_s=2000)
    async with open_simulator(settings) as sim:
        client = make_client(api_key="test", base_url=sim.base_url, max_connections=1)
        send, receive = anyio.create_memory_object_stream[Item](1000)
        async with client, receive:
            await Source(client, REQUEST, "s1").run(send)
            items = [item async for item in receive]
        handed = time.perf_counter_ns()
    (started,) = [i for i in items if isinstance(i.event, AttemptStarted)]
    (headers,) = [i for i in items if isinstance(i.event, ResponseHeaders)]
    assert headers.event.request_id is not None
    truth = sim.truth(headers.event.request_id)
    sent_ns = headers.event.sent_ns
    assert sent_ns is not None
    assert started.received_ns <= sent_ns <= truth["received_ns"] <= headers.received_ns
    kinds = ("message_start", "content_block_delta")
    written = [e["sent_ns"] for e in truth["events"] if e["type"] in kinds]
    events = [i for i in items if i.event.type in kinds]
    assert len(events) == len(written) > 2
    assert all(w <= i.received_ns <= handed for w, i in zip(written, events, strict=True))
    assert [i.received_ns for i in events] == sorted(i.received_ns for i in events)


async def test_the_simulator_stamps_a_request_when_its_first_bytes_arrive() -> None:
    """A request whose bytes come in two parts is received at the first, not when its handler starts."""
    body = json.dumps({**REQUEST, "stream": True}).encode()
    head = (
        b"POST /v1/messages HTTP/1.1\r\nhost: sim\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    async with open_simulator(SimulatorSettings(ttft_ms=0, tokens_per_s=0)) as sim:
        host, port = sim.base_url.removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as stream:
            first = time.perf_counter_ns()
            await stream.send(head[:20])
            await anyio.sleep(0.02)  # the server reads the first part and waits for the rest
            rest = time.perf_counter_ns()
            await stream.send(head[20:] + body)
            response = b""
            async for chunk in stream:
                response += chunk
        (request_id,) = sim.requests
    assert response.startswith(b"HTTP/1.1 200")
    assert first <= sim.truth(request_id)["received_ns"] < rest
