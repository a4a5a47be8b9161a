"""Wire times: the kernel's arrival stamps, through the real SDK, whatever the event loop is doing.

Each test makes the reader late on purpose (a blocking sleep in the loop, as a busy benchmark
would be) and checks that the stamps still say when the bytes arrived: a stamp taken when the loop
got to them would be the sleep's length too late. The simulator runs in its own process there, so
that the sleep does not stop it too.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import anthropic
import anyio
import httpx2
import pytest
import trustme

from pipeline.apps.simulator import SimulatorSettings, open_simulator, reference_text
from pipeline.client import make_client
from pipeline.events import Item, ResponseHeaders
from pipeline.source.stream import Source
from pipeline.wire.reader import WireReader
from pipeline.wire.stamps import StampedListener, StampedSocket
from pipeline.wire.transport import WireStream, WireTransport
from tests.conftest import SimulatorProcess, free_port
from tests.relays import tls_front

pytestmark = pytest.mark.anyio

LATE_S = 0.3
"""How long the loop is kept from reading: far longer than any stamp may be off."""

SLACK_NS = 20_000_000
"""A stamp may follow the server's write by this much (loopback, a loaded machine): a fifteenth of LATE_S."""

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 12,
    "messages": [{"role": "user", "content": "Say something."}],
}

SLOW = ("--ttft-ms", "50", "--tokens-per-s", "5")
"""The first delta 50 ms after the request, the next one at least 400 ms later: lateness shows."""


def test_a_stamp_is_the_arrival_not_the_read() -> None:
    """Bytes read 50 ms after they came are stamped when they came; a request's start is its first send.

    A loaded machine can defer loopback delivery itself, so the exchange is tried up to five times:
    a stamp taken at the read would fail every one of them."""
    for _ in range(5):
        if _stamped_at_arrival():
            return
    pytest.fail("in five exchanges, no arrival was stamped at least 40 ms before its read 50 ms later")


def _stamped_at_arrival() -> bool:
    with StampedListener() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with StampedSocket() as client:
            client.connect(listener.getsockname())
            server, _ = listener.accept()
            with server:
                assert isinstance(server, StampedSocket)
                before = time.perf_counter_ns()
                client.send(b"GET / HTTP/1.1\r\n")
                first_send = client.request_sent_ns
                client.send(b"\r\n")
                assert client.request_sent_ns == first_send  # the same request, still
                sent = time.perf_counter_ns()
                time.sleep(0.05)
                assert server.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
                read = time.perf_counter_ns()
                assert before <= first_send <= server.received_ns < read
                server.send(b"HTTP/1.1 200 OK\r\n\r\n")
                client.recv(100)
                client.send(b"GET /next HTTP/1.1\r\n\r\n")
                assert client.request_sent_ns > sent  # an answer came: the next send starts a request
                return server.received_ns < read - 40_000_000 and server.received_ns - sent < 1_000_000


async def _items(
    base_url: str, late_s: float, request: dict[str, Any] = REQUEST, **client_kwargs: Any
) -> list[Item]:
    """One stream's items, with the loop blocked for ``late_s`` as soon as the response headers came."""
    client = make_client(api_key="test", base_url=base_url, max_connections=1, wire=True, **client_kwargs)
    send, receive = anyio.create_memory_object_stream[Item](1000)
    items: list[Item] = []
    async with client, receive, anyio.create_task_group() as tg:
        tg.start_soon(Source(client, request, "s1").run, send)
        async for item in receive:
            items.append(item)
            if isinstance(item.event, ResponseHeaders):
                time.sleep(late_s)  # noqa: ASYNC251 - a busy loop: nobody reads while the first delta arrives
    return items


async def _check_against_truth(items: list[Item], base_url: str) -> None:
    (headers,) = [i.event for i in items if isinstance(i.event, ResponseHeaders)]
    async with httpx2.AsyncClient(base_url=base_url) as http:
        truth = (await http.get(f"/_sim/requests/{headers.request_id}")).json()
    assert headers.sent_ns is not None
    assert 0 <= truth["received_ns"] - headers.sent_ns < SLACK_NS
    written = [e["sent_ns"] for e in truth["events"] if e["type"] == "content_block_delta"]
    deltas = [i.received_ns for i in items if i.event.type == "content_block_delta"]
    assert len(deltas) == len(written) > 1
    for wrote, stamped in zip(written, deltas, strict=True):
        assert 0 <= stamped - wrote < SLACK_NS


@pytest.mark.parametrize("threaded", [False, True], ids=["read-in-loop", "read-in-thread"])
async def test_a_busy_loop_does_not_move_the_stamps(
    threaded: bool, simulator_process: SimulatorProcess
) -> None:
    """Each delta is stamped within 20 ms of the server's write though the loop looked 300 ms later."""
    base_url = simulator_process(*SLOW)
    kwargs = {"wire_reader": WireReader()} if threaded else {}
    await _check_against_truth(await _items(base_url, LATE_S, **kwargs), base_url)


async def test_a_consumer_far_behind_pauses_its_socket_and_loses_nothing(
    simulator_process: SimulatorProcess,
) -> None:
    """The thread reads ahead at most MAX_CHUNKS chunks, then leaves the rest to TCP; the text is whole."""
    reader = WireReader()
    request = REQUEST | {"max_tokens": 2000}
    base_url = simulator_process("--tokens-per-s", "3000")
    items = await _items(base_url, LATE_S, wire_reader=reader, request=request)
    text = "".join(i.event.delta.text for i in items if i.event.type == "content_block_delta")
    assert text == reference_text(request)
    assert reader.pauses > 0


@pytest.mark.parametrize("threaded", [False, True], ids=["read-in-loop", "read-in-thread"])
async def test_an_idle_connection_the_server_gave_up_is_not_reused(threaded: bool) -> None:
    """The server answers, then says 408 and closes while the connection idles: the next request
    goes on a new connection and gets its answer (reusing the old one would fail it)."""
    answered, closed = anyio.Event(), anyio.Event()
    served = 0

    async def serve(stream: anyio.abc.SocketStream) -> None:
        nonlocal served
        served += 1
        async with stream:
            await stream.receive()
            if served == 2:
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
                return
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
            await answered.wait()
            await stream.send(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        closed.set()

    transport = WireTransport(
        limits=httpx2.Limits(),
        ssl_context=ssl.create_default_context(),
        reader=WireReader() if threaded else None,
    )
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    url = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/"
    async with listener, anyio.create_task_group() as tg, httpx2.AsyncClient(transport=transport) as http:
        tg.start_soon(listener.serve, serve)
        first = await http.get(url)
        answered.set()
        await closed.wait()
        second = await http.get(url)
        tg.cancel_scope.cancel()
    assert (first.text, second.text, served) == ("first", "second", 2)


async def test_tls_chunks_carry_their_records_arrival() -> None:
    """Over https the text is whole, and each delta is stamped after the server wrote it, in order.

    (The TLS terminator runs in the test's loop, so the loop is not blocked here.)
    """
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    fast = SimulatorSettings(scenario="report", ttft_ms=20, tokens_per_s=400)
    async with open_simulator(fast) as sim, tls_front(sim.base_url, server_context) as https:
        client = make_client(
            api_key="test", base_url=https, max_connections=1, ssl_context=client_context, wire=True
        )
        async with client:
            raw = await client.messages.with_raw_response.create(**REQUEST)
            stream = raw.http_response.extensions["network_stream"]
            assert isinstance(stream, WireStream)
            assert stream.get_extra_info("ssl_object") is not None
            message = await raw.parse()
        items = await _items(https, 0, ssl_context=client_context)
        truth = sim.truth(sim.requests[-1])
    deltas = [i for i in items if i.event.type == "content_block_delta"]
    assert "".join(i.event.delta.text for i in deltas) == message.content[0].text
    written = [e["sent_ns"] for e in truth["events"] if e["type"] == "content_block_delta"]
    assert len(deltas) == len(written) > 1
    assert all(w <= i.received_ns for w, i in zip(written, deltas, strict=True))
    assert [i.received_ns for i in deltas] == sorted(i.received_ns for i in deltas)


async def test_a_proxy_for_the_host_keeps_the_sdks_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY set: the request goes to the proxy (down here, so it fails to connect), as the SDK's
    transport sends it; with NO_PROXY naming the host, it goes straight there, on wire times."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    async with open_simulator() as sim:
        async with make_client(api_key="test", base_url=sim.base_url, max_connections=1, wire=True) as client:
            with pytest.raises(anthropic.APIConnectionError):
                await client.messages.create(**REQUEST)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with make_client(api_key="test", base_url=sim.base_url, max_connections=1, wire=True) as client:
            raw = await client.messages.with_raw_response.create(**REQUEST)
    assert isinstance(raw.http_response.extensions["network_stream"], WireStream)
    assert (await raw.parse()).stop_reason == "max_tokens"
