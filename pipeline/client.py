"""The SDK client, built once at the edge with rillet's policies.

The SDK's own retries are turned off (``max_retries=0``): the source owns every attempt, so retries
never multiply silently and every one is visible as an event and counted.

Its transport is :class:`~pipeline.wire_transport.WireTransport`, so times are wire times
(:mod:`pipeline.wire`): each request is stamped (its :data:`SENT_NS` extension, on the
``time.perf_counter_ns`` clock) just before its first byte went to the socket, the latency clock's
zero; the SDK's request building and any wait for a pooled connection come before it and are the
client's cost, which a benchmark reports apart instead of inside TTFT. Each response's body stream
is wrapped to note when the latest chunk arrived at the socket, as the kernel stamped it
(:class:`Arrival`, in its :data:`ARRIVAL` extension). The SDK decodes chunk by chunk without
reading ahead, so when it yields an event, the latest chunk is the one that completed it: the
event loop's delays, SSE decoding, JSON and pydantic work all stay out of the receive time.

Behind an HTTP proxy (``HTTPS_PROXY`` and the like, or the system's settings, unless ``NO_PROXY``
exempts the host) the SDK's default transport is kept, and the same stamps are taken in user
space: at the hand-off to the transport, and as each chunk is read.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

from pipeline.wire_reader import WireReader
from pipeline.wire_transport import SocketOption, WireStream, WireTransport

API_URL = "https://api.anthropic.com"
"""The SDK's default base URL (it exports no constant for it): the host a proxy would be for."""

SENT_NS = "rillet.sent_ns"
"""Request extension: when the request's first byte was sent, in ``perf_counter_ns``."""

KEEPALIVE: tuple[SocketOption, ...] = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *(
        (socket.IPPROTO_TCP, option, value)
        for name, value in (("TCP_KEEPINTVL", 60), ("TCP_KEEPCNT", 5), ("TCP_KEEPIDLE", 60))
        if (option := getattr(socket, name, None)) is not None  # as the SDK: not every system has each
    ),
)
"""The SDK's own TCP keep-alive, which its default transport sets: a quiet long stream stays open."""


ARRIVAL = "rillet.arrival"
"""Response extension: the response's :class:`Arrival`."""


class Arrival:
    """When the latest chunk of a response body came off the transport, in ``perf_counter_ns``."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


class _StampedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, arrival: Arrival, wire: WireStream | None) -> None:
        self._inner = inner
        self._arrival = arrival
        self._wire = wire

    async def __aiter__(self) -> AsyncIterator[bytes]:
        arrival = self._arrival
        if self._wire is None:
            async for chunk in self._inner:
                arrival.ns = time.perf_counter_ns()
                yield chunk
            return
        wire = self._wire
        async for chunk in self._inner:
            arrival.ns = wire.received_ns
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _stamp_sent(request: httpx2.Request) -> None:
    request.extensions[SENT_NS] = time.perf_counter_ns()


async def _stamp_arrivals(response: httpx2.Response) -> None:
    wire = response.extensions.get("network_stream")
    wire = wire if isinstance(wire, WireStream) else None
    if wire is not None:
        response.request.extensions[SENT_NS] = wire.socket.request_sent_ns
    stream = response.stream
    if isinstance(stream, httpx2.AsyncByteStream):
        arrival = Arrival(wire.received_ns if wire is not None else time.perf_counter_ns())
        response.extensions[ARRIVAL] = arrival
        response.stream = _StampedStream(stream, arrival, wire)


def arrival(response: httpx2.Response) -> Arrival | None:
    """The response's :class:`Arrival`; None for a client not built here."""
    found = response.extensions.get(ARRIVAL)
    return found if isinstance(found, Arrival) else None


def sent_ns(response: httpx2.Response) -> int | None:
    """When ``response``'s request was sent; None for a client not built here."""
    stamp = response.request.extensions.get(SENT_NS)
    return stamp if isinstance(stamp, int) else None


def make_client(
    *,
    api_key: str | None,
    base_url: str | None,
    max_connections: int = 100,
    timeout: float = 600.0,
    ssl_context: ssl.SSLContext | None = None,
    wire_reader: WireReader | None = None,
) -> AsyncAnthropic:
    """A client whose connection pool fits the concurrency it will carry.

    ``ssl_context`` lets several clients share one (building the default costs about 30 ms);
    ``wire_reader`` reads their sockets in its thread, for stamps a busy loop cannot delay.
    """
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    hooks: dict[str, list[Callable[..., Any]]] = {"response": [_stamp_arrivals]}
    context = ssl_context if ssl_context is not None else httpx2.create_ssl_context()
    if _proxied(base_url or os.environ.get("ANTHROPIC_BASE_URL") or API_URL):
        hooks["request"] = [_stamp_sent]  # the wire transport stamps the send itself
        http_client = DefaultAsyncHttpxClient(
            limits=limits, timeout=timeout, verify=context, event_hooks=hooks
        )
    else:
        transport = WireTransport(
            limits=limits, ssl_context=context, socket_options=KEEPALIVE, reader=wire_reader
        )
        http_client = DefaultAsyncHttpxClient(timeout=timeout, transport=transport, event_hooks=hooks)
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client)


def _proxied(base_url: str) -> bool:
    """Whether the SDK would reach ``base_url`` through a proxy (environment or system settings)."""
    url = urllib.parse.urlsplit(base_url)
    proxies = urllib.request.getproxies()
    if url.scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(url.hostname or "")
