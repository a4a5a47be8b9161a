"""The SDK client, built once at the edge with rillet's policies.

The SDK's own retries are turned off (``max_retries=0``): the source owns every attempt, so retries
never multiply silently and every one is visible as an event and counted.

The transport is the SDK's own (httpx2, with its proxies, TLS and keep-alive), and the stamps are
taken in user space (:mod:`pipeline.arrivals`): each request (its ``SENT_NS`` extension, on the
``time.perf_counter_ns`` clock) as the SDK hands it to the transport, and each response body chunk
as the transport yields it (an ``Arrival``, in its ``ARRIVAL`` extension). The source decodes chunk
by chunk without reading ahead (:mod:`pipeline.fast_events`), so the latest chunk is the one that
completed each event it yields: SSE decoding and JSON work stay out of the receive time.

``make_client(wire=True)`` (what ``rillet bench`` uses) swaps in wire times instead: kernel receive
stamps read off the socket, optionally by a thread a busy loop cannot delay (:mod:`pipeline.wire.client`,
imported only then).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

from pipeline.arrivals import SENT_NS, stamp_body

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from pipeline.wire.reader import WireReader

MAX_IDLE_CONNECTIONS = 32
"""Idle connections kept for reuse (on wire times, all are kept). httpcore2 checks every idle one
(a ``MSG_PEEK`` on its socket) on each request and each close, so one kept per stream of a
1,000-stream run makes each of those O(N); 32 still covers the connections a closed loop hands
from one request to the next."""


async def _stamp_sent(request: httpx2.Request) -> None:
    request.extensions[SENT_NS] = time.perf_counter_ns()


async def _stamp_arrivals(response: httpx2.Response) -> None:
    stamp_body(response, time.perf_counter_ns)


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
    on_wire = wire or wire_reader is not None
    # A benchmark keeps every connection its load needs, as vLLM's and AIPerf's clients do: a
    # request that must open one would measure a handshake in its TTFT.
    idle = max_connections if on_wire else min(max_connections, MAX_IDLE_CONNECTIONS)
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=idle)
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
    if not on_wire:
        return client
    from pipeline.wire.client import wire_http_client

    wired = wire_http_client(http_client, client.base_url, limits, ssl_context, wire_reader)
    if wired is None:
        return client
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, http_client=wired, **options)
