"""The SDK client, built once at the edge with rillet's policies.

The SDK's own retries are turned off (``max_retries=0``): the source owns every attempt, so retries
never multiply silently and every one is visible as an event and counted.
"""

from __future__ import annotations

import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient


def make_client(
    *,
    api_key: str | None,
    base_url: str | None,
    max_connections: int = 100,
    timeout: float = 600.0,
) -> AsyncAnthropic:
    """A client whose connection pool fits the concurrency it will carry."""
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    http_client = DefaultAsyncHttpxClient(limits=limits, timeout=timeout)
    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, http_client=http_client)
