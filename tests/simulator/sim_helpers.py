"""Shared request bodies and a raw-stream reader for the simulator tests."""

from __future__ import annotations

from typing import Any

import httpx2

PROMPT = "Write a long report about rivers."


def body(max_tokens: int = 300, model: str = "claude-opus-4-7", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": PROMPT}],
        **extra,
    }


async def raw_stream(base_url: str, request: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """The raw SSE body for ``request`` (stream forced on), read with plain httpx2."""
    async with (
        httpx2.AsyncClient(base_url=base_url, headers={"x-api-key": "k", **(headers or {})}) as client,
        client.stream("POST", "/v1/messages", json={**request, "stream": True}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join([chunk async for chunk in response.aiter_raw()])
