"""The SDK's client on wire times (``make_client(wire=True)``): what ``rillet bench`` measures with.

Its transport is :class:`~pipeline.wire.transport.WireTransport`: each request is stamped just
before its first byte went to the socket, the latency clock's zero, so the SDK's request building
and any wait for a pooled connection are the client's cost, which a benchmark reports apart instead
of inside TTFT; each chunk carries the kernel's arrival stamp of the bytes that completed it
(:mod:`pipeline.wire.stamps`), which the event loop's delays cannot move.

A host the SDK would reach through a proxy, by httpx2's own rules (``HTTPS_PROXY``, ``NO_PROXY``,
the system's settings), keeps the SDK's transport and its user-space stamps.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time

import httpx2
from anthropic import DefaultAsyncHttpxClient

from pipeline.arrivals import SENT_NS, stamp_body
from pipeline.wire.reader import WireReader
from pipeline.wire.transport import SocketOption, WireStream, WireTransport


def _keepalive() -> tuple[SocketOption, ...]:
    """The SDK's own TCP keep-alive, as its default transport sets it: a quiet long stream stays open."""
    interval = getattr(socket, "TCP_KEEPINTVL", None)
    if interval is None and sys.platform == "darwin":
        interval = getattr(socket, "TCP_KEEPALIVE", 0x10)
    count, idle = getattr(socket, "TCP_KEEPCNT", None), getattr(socket, "TCP_KEEPIDLE", None)
    wanted = ((interval, 60), (count, 5), (idle, 60))
    return (
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        *((socket.IPPROTO_TCP, option, value) for option, value in wanted if option is not None),
    )


KEEPALIVE = _keepalive()


async def _stamp_wire(response: httpx2.Response) -> None:
    wire = response.extensions.get("network_stream")
    if not isinstance(wire, WireStream):  # a Unix socket: anyio's own stream, stamped in user space
        stamp_body(response, time.perf_counter_ns)
        return
    response.request.extensions[SENT_NS] = wire.socket.request_sent_ns
    stamp_body(response, lambda: wire.received_ns)


def wire_http_client(
    default: httpx2.AsyncClient,
    url: httpx2.URL,
    limits: httpx2.Limits,
    ssl_context: ssl.SSLContext | None,
    reader: WireReader | None,
) -> httpx2.AsyncClient | None:
    """``default``'s settings on :class:`WireTransport`; None when ``default`` proxies ``url``."""
    if default._transport_for_url(url) is not default._transport:  # httpx2's own routing decides
        return None
    transport = WireTransport(
        limits=limits,
        ssl_context=ssl_context if ssl_context is not None else httpx2.create_ssl_context(),
        socket_options=KEEPALIVE,
        reader=reader,
    )
    hooks = {"request": default.event_hooks["request"], "response": [_stamp_wire]}
    return DefaultAsyncHttpxClient(timeout=default.timeout, transport=transport, event_hooks=hooks)
