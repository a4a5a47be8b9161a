"""The SDK client, built once at the edge with rillet's policies.

The SDK's own retries are turned off (``max_retries=0``): the source owns every attempt, so retries
never multiply silently and every one is visible as an event and counted.

The transport is the SDK's own (httpx2, with its proxies, TLS and keep-alive), and the stamps are
taken in user space: each request (its :data:`SENT_NS` extension, on the ``time.perf_counter_ns``
clock) as the SDK hands it to the transport, and each response body chunk as the transport yields
it (:class:`Arrival`, in its :data:`ARRIVAL` extension). The SDK decodes chunk by chunk without
reading ahead, so when it yields an event, the latest chunk is the one that completed it: SSE
decoding, JSON and pydantic work stay out of the receive time.

``make_client(wire=True)`` (what ``rillet bench`` uses) swaps in wire times instead: kernel receive
stamps read off the socket, optionally by a thread a busy loop cannot delay (:mod:`pipeline.wire_client`,
imported only then).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from pipeline.wire_reader import WireReader

SENT_NS = "rillet.sent_ns"
"""Request extension: when the request went to the transport (or, on wire times, to the socket)."""

ARRIVAL = "rillet.arrival"
"""Response extension: the response's :class:`Arrival`."""

Clock = Callable[[], int]
"""When the chunk just read arrived, in ``perf_counter_ns``."""

MAX_IDLE_CONNECTIONS = 32
"""Idle connections kept for reuse. httpcore2 checks every idle one (a ``MSG_PEEK`` on its socket)
on each request and each close, so one kept per stream of a 1,000-stream run makes each of those
O(N); 32 still covers the connections a closed loop hands from one request to the next."""


class Arrival:
    """When the latest chunk of a response body came off the transport, in ``perf_counter_ns``."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


class _StampedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, arrival: Arrival, clock: Clock) -> None:
        self._inner = inner
        self._arrival = arrival
        self._clock = clock

    async def __aiter__(self) -> AsyncIterator[bytes]:
        arrival, clock = self._arrival, self._clock
        async for chunk in self._inner:
            arrival.ns = clock()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def stamp_body(response: httpx2.Response, clock: Clock) -> None:
    """Wraps ``response``'s body so that each chunk notes its arrival by ``clock``."""
    stream = response.stream
    if isinstance(stream, httpx2.AsyncByteStream):
        arrival = Arrival(clock())
        response.extensions[ARRIVAL] = arrival
        response.stream = _StampedStream(stream, arrival, clock)


async def _stamp_sent(request: httpx2.Request) -> None:
    request.extensions[SENT_NS] = time.perf_counter_ns()


async def _stamp_arrivals(response: httpx2.Response) -> None:
    stamp_body(response, time.perf_counter_ns)


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
    wire: bool = False,
    wire_reader: WireReader | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncAnthropic:
    """A client whose connection pool fits the concurrency it will carry.

    ``ssl_context`` lets several clients share one (building the default costs about 30 ms).
    ``wire`` stamps on wire times, and ``wire_reader`` (implies ``wire``) reads the sockets in its
    thread; a host the SDK would reach through a proxy keeps the SDK's transport all the same.
    ``tracer_provider`` takes the SDK's call spans (one per attempt, the SDK retrying nothing) into
    rillet's traces (:mod:`sinks.otel`); None leaves the SDK on OpenTelemetry's global provider.
    """
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(max_connections, MAX_IDLE_CONNECTIONS),
    )
    hooks: dict[str, list[Callable[..., Any]]] = {"request": [_stamp_sent], "response": [_stamp_arrivals]}
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    http_client: httpx2.AsyncClient = DefaultAsyncHttpxClient(
        limits=limits, timeout=timeout, verify=verify, event_hooks=hooks
    )
    # Given this option, the SDK reads none of its ANTHROPIC_OPEN_TELEMETRY* variables.
    options: dict[str, Any] = {}
    if tracer_provider is not None:
        options["open_telemetry"] = {"tracer_provider": tracer_provider}
    client = AsyncAnthropic(
        api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client, **options
    )
    if not (wire or wire_reader is not None):
        return client
    from pipeline.wire_client import wire_http_client

    wired = wire_http_client(http_client, client.base_url, limits, ssl_context, wire_reader)
    if wired is None:
        return client
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, http_client=wired, **options)
