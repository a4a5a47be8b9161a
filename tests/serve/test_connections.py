"""Connections against a real uvicorn: browsers leave, stall, reconnect and idle; the pipeline never waits."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import anyio
import httpx2
import pytest

from pipeline.apps.serve import RegistryStatistics
from tests.serve.harness import Reading, Served, read_events, serving, start, status
from tests.serve.sse_parser import Event, SseParser

pytestmark = pytest.mark.anyio


async def until(served: Served, check: Callable[[RegistryStatistics], bool], within: float) -> None:
    """Waits, at most ``within`` s, for the registry's counts to satisfy ``check``.

    What changes them is the network (a FIN, a full socket buffer), which no task-level primitive
    observes, so this polls the counts: a bounded wait for a condition, not a guessed delay.
    """
    with anyio.fail_after(within):
        while not check(served.server.registry.statistics()):  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def open_stalled_reader(served: Served, stream_id: str) -> socket.socket:
    """A client with a tiny receive buffer that asks for the events and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    try:
        sock.connect((host, int(port)))
    except BlockingIOError:
        await anyio.wait_writable(sock)
    sock.send(f"GET /api/streams/{stream_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    return sock


async def drain(sock: socket.socket) -> bytes:
    """Everything the server left in the connection, up to its close."""
    received = b""
    while True:
        await anyio.wait_readable(sock)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return received
        received += chunk


async def test_a_leaving_browser_frees_its_reader_and_never_stops_the_stream() -> None:
    """A disconnect is noticed within 1 s; the stream goes on to completion regardless."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=300, simulator={"tokens_per_s": 400})
        async with httpx2.AsyncClient(base_url=served.url) as leaving:
            parser = SseParser()
            async with leaving.stream("GET", f"/api/streams/{stream_id}/events") as response:
                async for chunk in response.aiter_bytes():
                    if any(e.type == "content_block_delta" for e in parser.feed(chunk)):
                        break
            assert served.server.registry.statistics().connections == 1
        left = time.monotonic()
        await until(served, lambda stats: stats.connections == 0, within=1)
        assert time.monotonic() - left < 1
        assert (await status(http, stream_id))["state"] == "running"
        rest = await read_events(http, stream_id)
        assert rest.events[-1].type == "end"
        assert (await status(http, stream_id))["outcome"] == "completed"


async def test_a_stalled_reader_is_cut_while_the_others_keep_pace() -> None:
    """A reader that stops reading is closed after ``send_timeout_s``; the others get every frame on time."""
    async with serving(send_timeout_s=0.5, send_buffer=4096) as served, served.http() as http:
        baseline_id = await start(http, max_tokens=12000)
        started = time.monotonic()
        baseline = await read_events(http, baseline_id)
        alone = time.monotonic() - started

        stream_id = await start(http, max_tokens=12000)  # enough bytes to fill the stalled socket's buffers
        stalled = await open_stalled_reader(served, stream_id)
        try:
            readings: list[Reading] = []

            async def read() -> None:
                readings.append(await read_events(http, stream_id))

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(read)
            beside_a_stall = time.monotonic() - started
            await until(served, lambda stats: stats.stalled_total == 1, within=2)
            await until(served, lambda stats: stats.connections == 0, within=1)
            with anyio.fail_after(5):
                partial = await drain(stalled)
        finally:
            stalled.close()
        text = (await status(http, stream_id))["text"]
        assert [reading.text() for reading in readings] == [text] * 3
        assert len(baseline.text()) == len(text)
        assert beside_a_stall < alone * 2 + 0.5
        assert partial.startswith(b"HTTP/1.1 200 OK")
        assert b"event: end" not in partial
        assert not partial.endswith(b"0\r\n\r\n")


async def test_an_idle_stream_sends_heartbeats() -> None:
    """While the model is silent, comment lines keep proxies from closing the connection."""
    async with serving(heartbeat_s=0.1) as served, served.http() as http:
        stream_id = await start(http, max_tokens=20, simulator={"ttft_ms": 700})
        parser = SseParser()
        async with http.stream("GET", f"/api/streams/{stream_id}/events") as response:
            async for chunk in response.aiter_bytes():
                if any(e.type == "content_block_delta" for e in parser.feed(chunk)):
                    break
        assert parser.comments >= 3


async def test_connections_are_recycled_and_resume_without_loss() -> None:
    """After ``max_connection_s`` the server ends the response; resuming from the last id loses nothing."""
    async with serving(max_connection_s=0.1) as served, served.http() as http:
        stream_id = await start(http, max_tokens=800, simulator={"tokens_per_s": 2000})
        events: list[Event] = []
        connections = 0
        while not events or events[-1].type != "end":
            headers = {"last-event-id": events[-1].last_event_id} if events else {}
            events += (await read_events(http, stream_id, headers)).events
            connections += 1
        assert connections > 2
        assert served.server.registry.statistics().resumed_total == connections - 1
        assert [int(e.last_event_id) for e in events] == list(range(1, len(events) + 1))
        assert Reading(200, events).text() == (await status(http, stream_id))["text"]


async def test_connection_limits_answer_503() -> None:
    """Past the per-stream or per-process connection limit, a reader is refused, not queued."""
    async with serving(max_connections_per_stream=2, max_connections=3) as served, served.http() as http:
        slow = await start(http, max_tokens=2000, simulator={"tokens_per_s": 50})
        other = await start(http, max_tokens=2000, simulator={"tokens_per_s": 50})
        async with anyio.create_task_group() as tg:
            for stream_id in (slow, slow, other):
                tg.start_soon(read_events, http, stream_id)
            await until(served, lambda stats: stats.connections == 3, within=2)
            per_stream = await http.get(f"/api/streams/{slow}/events")
            assert per_stream.status_code == 503
            assert "this stream" in per_stream.json()["error"]
            per_process = await http.get(f"/api/streams/{other}/events")
            assert per_process.status_code == 503
            for stream_id in (slow, other):
                await http.post(f"/api/streams/{stream_id}/cancel")


async def test_cancel_closes_upstream_and_keeps_the_text() -> None:
    """Cancel is the only stop: upstream is closed (the simulator sees it), the partial text stays."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=4000, simulator={"tokens_per_s": 300})
        parser = SseParser()
        async with http.stream("GET", f"/api/streams/{stream_id}/events") as response:
            async for chunk in response.aiter_bytes():
                if any(e.type == "content_block_delta" for e in parser.feed(chunk)):
                    assert (await http.post(f"/api/streams/{stream_id}/cancel")).status_code == 202
        state = await status(http, stream_id)
        assert state["outcome"] == "cancelled"
        assert 0 < len(state["text"])
        truth = served.sim.truth(served.sim.requests[-1])
        assert truth["disconnected"]
        assert not truth["completed"]


async def test_shutdown_with_open_streams_ends_in_time() -> None:
    """Open EventSource connections and running streams do not hold the server past its grace period."""
    readings: list[Reading] = []

    async def read(url: str, stream_id: str) -> None:
        async with httpx2.AsyncClient(base_url=url) as own:
            readings.append(await read_events(own, stream_id))

    async with anyio.create_task_group() as tg:
        async with serving(graceful_shutdown_s=2) as served:
            async with served.http() as http:
                stream_id = await start(http, max_tokens=4000, simulator={"tokens_per_s": 50})
            for _ in range(3):
                tg.start_soon(read, served.url, stream_id)
            await until(served, lambda stats: stats.connections == 3, within=2)
            log = served.server.sink.logs[stream_id]
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 1.5
    assert [reading.status for reading in readings] == [200] * 3
    assert log.ended is not None
    assert log.ended.outcome == "cancelled"
