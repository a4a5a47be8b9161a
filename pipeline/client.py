"""The SDK client, built once at the edge with rillet's policies.

The SDK's own retries are turned off (``max_retries=0``): the source owns every attempt, so retries
never multiply silently and every one is visible as an event and counted.

Each request is stamped (``time.perf_counter_ns()``, in its :data:`SENT_NS` extension) the moment
the SDK hands it, fully built, to the transport: the latency clock's zero. The SDK's own request
building before it (about a millisecond of pydantic and header work) is the client's cost, not the
server's, and a benchmark reports it apart instead of inside TTFT.

Each response's body stream is wrapped to note when its latest chunk came off the transport
(:class:`Arrival`, in its :data:`ARRIVAL` extension). The SDK decodes chunk by chunk without reading
ahead, so when it yields an event, the latest chunk is the one that completed it: that stamp leaves
the SSE decoding, JSON and pydantic work (about 0.2 ms for a first delta) out of the receive time.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator

import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

SENT_NS = "rillet.sent_ns"
"""Request extension: when the request was handed to the transport, in ``perf_counter_ns``."""


ARRIVAL = "rillet.arrival"
"""Response extension: the response's :class:`Arrival`."""


class Arrival:
    """When the latest chunk of a response body came off the transport, in ``perf_counter_ns``."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


class _StampedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, arrival: Arrival) -> None:
        self._inner = inner
        self._arrival = arrival

    async def __aiter__(self) -> AsyncIterator[bytes]:
        arrival = self._arrival
        async for chunk in self._inner:
            arrival.ns = time.perf_counter_ns()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _stamp_sent(request: httpx2.Request) -> None:
    request.extensions[SENT_NS] = time.perf_counter_ns()


async def _stamp_arrivals(response: httpx2.Response) -> None:
    stream = response.stream
    if isinstance(stream, httpx2.AsyncByteStream):
        arrival = Arrival(time.perf_counter_ns())
        response.extensions[ARRIVAL] = arrival
        response.stream = _StampedStream(stream, arrival)


def arrival(response: httpx2.Response) -> Arrival | None:
    """The response's :class:`Arrival`; None for a client not built here."""
    found = response.extensions.get(ARRIVAL)
    return found if isinstance(found, Arrival) else None


def sent_ns(response: httpx2.Response) -> int | None:
    """When ``response``'s request was handed to the transport; None for a client not built here."""
    stamp = response.request.extensions.get(SENT_NS)
    return stamp if isinstance(stamp, int) else None


def make_client(
    *,
    api_key: str | None,
    base_url: str | None,
    max_connections: int = 100,
    timeout: float = 600.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncAnthropic:
    """A client whose connection pool fits the concurrency it will carry.

    ``ssl_context`` lets several clients share one (building the default costs about 30 ms).
    """
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    http_client = DefaultAsyncHttpxClient(
        limits=limits,
        timeout=timeout,
        verify=ssl_context if ssl_context is not None else True,
        event_hooks={"request": [_stamp_sent], "response": [_stamp_arrivals]},
    )
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client)
