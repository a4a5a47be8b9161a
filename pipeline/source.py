"""The source: the SDK's raw event stream, stamped on arrival, into a bounded channel.

Receive times are taken with ``time.perf_counter_ns()`` the moment the SDK yields an event, before
any queue, so a slow stage or sink never distorts latency figures. The source owns every HTTP
attempt of a logical stream: :meth:`Source.run` loops over attempts, each announced by an
:class:`~pipeline.events.AttemptStarted` item and answered by a
:class:`~pipeline.events.ResponseHeaders` item.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import anthropic
import httpx2
from anthropic import AsyncAnthropic
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.errors import SourceError
from pipeline.events import AttemptStarted, Item, ResponseHeaders


def error_type_of(exc: BaseException) -> str:
    """A bounded label for an upstream failure, for metrics and summaries."""
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        label = error.get("type") if isinstance(error, dict) else None
        return str(label or f"http_{exc.status_code}")
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return "timeout"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return "connection_error"
    return "api_error"


def describe(exc: BaseException) -> str:
    """One line for a user: the API's own message where there is one."""
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{exc.status_code} {error.get('type')}: {error['message']}"
        return f"{exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


class EventSource(Protocol):
    """Anything that fills a stream's channel: the live API, a recorded file, a Redis log."""

    attempts: int

    async def run(self, send: MemoryObjectSendStream[Item]) -> None:
        """Sends every item, closes ``send``, and raises a :class:`RilletError` on failure."""
        ...


class Source:
    """One logical stream's HTTP attempts against the Messages API."""

    def __init__(self, client: AsyncAnthropic, request: dict[str, Any], stream_id: str) -> None:
        self._client = client
        self._request = request
        self._stream_id = stream_id
        self.attempts = 0

    async def run(self, send: MemoryObjectSendStream[Item]) -> None:
        """Streams every event into ``send``; raises :class:`SourceError` when the API fails."""
        async with send:
            await self._attempt(send, self._request, strategy="initial", reason="start")

    async def _attempt(
        self, send: MemoryObjectSendStream[Item], request: dict[str, Any], *, strategy: str, reason: str
    ) -> None:
        self.attempts += 1
        attempt = self.attempts
        stream_id = self._stream_id
        now = time.perf_counter_ns
        await send.send(Item(stream_id, AttemptStarted(attempt, strategy, reason), now(), attempt))
        try:
            stream = await self._client.messages.create(**request, stream=True)
            response = stream.response
            headers = ResponseHeaders(attempt, response.headers.get("request-id"), response.status_code)
            await send.send(Item(stream_id, headers, now(), attempt))
            async with stream:
                async for event in stream:
                    await send.send(Item(stream_id, event, now(), attempt))
        except (anthropic.APIError, httpx2.TransportError) as exc:
            raise SourceError(describe(exc), error_type_of(exc)) from exc
