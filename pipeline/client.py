"""The SDK client, built once at the edge with rillet's policies.

The SDK's own retries are turned off (``max_retries=0``): the source owns every attempt, so retries
never multiply silently and every one is visible as an event and counted.

Each request is stamped (``time.perf_counter_ns()``, in its :data:`SENT_NS` extension) the moment
the SDK hands it, fully built, to the transport: the latency clock's zero. The SDK's own request
building before it (about a millisecond of pydantic and header work) is the client's cost, not the
server's, and a benchmark reports it apart instead of inside TTFT.
"""

from __future__ import annotations

import time

import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

SENT_NS = "rillet.sent_ns"
"""Request extension: when the request was handed to the transport, in ``perf_counter_ns``."""


async def _stamp_sent(request: httpx2.Request) -> None:
    request.extensions[SENT_NS] = time.perf_counter_ns()


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
) -> AsyncAnthropic:
    """A client whose connection pool fits the concurrency it will carry."""
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    http_client = DefaultAsyncHttpxClient(
        limits=limits, timeout=timeout, event_hooks={"request": [_stamp_sent]}
    )
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client)
