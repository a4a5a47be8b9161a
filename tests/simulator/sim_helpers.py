"""Shared request bodies, a raw-stream reader and SSE helpers for the simulator tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2

PROMPT = "Write a long report about rivers."
SSE_FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "sse"


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


def parse_sse(raw: bytes | str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of each complete event in a raw SSE body."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    out: list[tuple[str, dict[str, Any]]] = []
    for chunk in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, None
        for line in chunk.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name is not None and data is not None:
            out.append((name, data))
    return out


def fixture_events(name: str) -> list[tuple[str, dict[str, Any]]]:
    return parse_sse((SSE_FIXTURES / name).read_text())


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every dict key in ``value`` (lists are not entered)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else k
            paths.add(path)
            paths |= key_paths(v, path)
    return paths


def collapse(names: list[str]) -> list[str]:
    """Event names with runs of the same name collapsed to one."""
    out: list[str] = []
    for n in names:
        if not out or out[-1] != n:
            out.append(n)
    return out
