"""What went wrong with an HTTP attempt, and whether another attempt can cure it.

SDK 2.x raises three kinds of failure, none of which it retries itself (``max_retries=0``):

- before the stream, an :class:`anthropic.APIStatusError` carrying the HTTP status and headers
  (429, 529 and 5xx are worth retrying after ``retry-after``; other 4xx are final), or an
  :class:`anthropic.APIConnectionError` for a connection that never answered;
- while iterating, a bare ``httpx2.TransportError`` (``RemoteProtocolError`` "incomplete chunked
  read", ``ReadError``, ``ReadTimeout``), never wrapped: code catching ``httpx.*`` misses it;
- while iterating, an in-stream ``event: error``, which the SDK raises as an ``APIStatusError``
  with **status 200** and the error type in the body.
"""

from __future__ import annotations

from dataclasses import dataclass

import anthropic
import httpx2

from pipeline.source.backoff import retry_after_seconds

PREFILL_REJECTED = "does not support assistant message prefill"
"""The 400 text of models (Claude 4.6 and later) that refuse a final assistant turn."""

_RESUMABLE_EVENTS = frozenset({"overloaded_error", "api_error", "timeout_error", "rate_limit_error"})
"""In-stream error types after which the stream is resumed."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt ended early; ``reason`` is a bounded label, ``message`` one line for a user."""

    reason: str
    message: str
    retryable: bool
    retry_after: float | None = None
    slow: bool = False
    """A rate limit met mid-stream: back off by the full ceiling, not a jittered share."""
    prefill_rejected: bool = False


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


def classify(exc: anthropic.APIError | httpx2.TransportError) -> Failure:
    """The failure ``exc`` stands for, retryable or not."""
    label, message = error_type_of(exc), describe(exc)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status == 200:
            return Failure(label, message, label in _RESUMABLE_EVENTS, slow=label == "rate_limit_error")
        if status == 400 and PREFILL_REJECTED in message:
            return Failure("prefill_unsupported", message, retryable=True, prefill_rejected=True)
        if status in (429, 529) or status >= 500:
            return Failure(label, message, True, retry_after_seconds(exc.response.headers))
        return Failure(label, message, retryable=False)
    return Failure(label, message, isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError))


def stalled(idle_timeout: float) -> Failure:
    """No event arrived for ``idle_timeout`` seconds: the connection is presumed dead."""
    return Failure("stall", f"no event for {idle_timeout:g} s (idle timeout)", retryable=True)


INCOMPLETE = Failure("incomplete_stream", "the stream ended before message_stop", retryable=True)
"""The body ended cleanly but the message did not: treated as a drop."""
