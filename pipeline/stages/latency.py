"""Latency meter: a stream's timings from the receive stamps the source put on each item.

Definitions follow ``reference/metrics.md``; every figure is in seconds from the moment the first
attempt's request went to the socket (``ResponseHeaders.sent_ns``, stamped by the client of
:mod:`pipeline.client`). Neither the runner's start-up nor the SDK's request building (about a
millisecond of client CPU, more when the loop is busy) nor a wait for a pooled connection counts
as the server's time. Without that stamp (a client built elsewhere, or
an attempt that never got headers) the zero is the first attempt's ``AttemptStarted`` stamp, just
before the SDK call, and failing that ``ctx.started_ns``:

- time to headers, to ``message_start``, to the first delta (headline TTFT), to the first text
  delta and to the first thinking delta. A delta counts when it carries content: an empty
  ``text_delta`` is not a token, and pings never reach the stages. These first-of-kind moments are
  the first attempt's only: a retried or resumed stream's later first token would hide the retry
  inside TTFT, so such a field stays None and the retry shows in the attempt count instead.
- gaps between successive content deltas of one attempt (per chunk, not per token). The gap
  across a reconnect is no inter-token time, so it is left out.
- end to end: to the last ``message_stop``, or to the last item when the stream broke off.
- time per output token: (E2E − TTFT) / (output_tokens − 1) with output tokens from the API's
  usage, never a tokenizer; None for a stream of several attempts, whose E2E holds the reconnects.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, Literal

from pipeline.events import STREAMED_TEXT_FIELDS, FirstToken, Item, LatencySummary
from pipeline.stages._base import StreamContext

_CONTENT_FIELDS = {
    **STREAMED_TEXT_FIELDS,
    "signature_delta": "signature",
    "citations_delta": "citation",
}
"""Where each known delta type keeps its content; a delta of a type unknown here counts as content."""


def content_chars(delta: Any) -> int | None:
    """Characters of streamed text a content delta carries (0 for a signature or a citation), or
    None for an empty one, which is no token: the one test of what the meter counts as a chunk."""
    attribute = _CONTENT_FIELDS.get(delta.type)
    if attribute is None:
        return 0
    value = getattr(delta, attribute, None)
    if not value:
        return None
    return len(value) if attribute in STREAMED_TEXT_FIELDS.values() else 0


FirstKind = Literal["message_start", "delta", "text", "thinking"]

_FIRSTS: dict[str, FirstKind] = {"text_delta": "text", "thinking_delta": "thinking"}


class LatencyStage:
    """Sends a :class:`FirstToken` at each first-of-kind moment and a :class:`LatencySummary` at the end."""

    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        self._start = ctx.started_ns
        self._firsts: dict[FirstKind, float] = {}
        self._headers: float | None = None
        self._gaps = array("f")  # 4 bytes a delta; 7 digits time a 10 s gap to the microsecond
        self._last_delta_ns = 0
        self._last_attempt = 0
        self._last_ns = ctx.started_ns
        self._stop_ns: int | None = None
        self._output_tokens: dict[int, int] = {}
        self._retried = False

    def process(self, item: Item) -> Sequence[Item]:
        event = item.event
        kind = event.type
        now = item.received_ns
        self._last_ns = now
        if item.attempt != 1:
            self._retried = True
        if kind == "content_block_delta":
            delta = event.delta
            if content_chars(delta) is None:
                return (item,)
            if item.attempt == self._last_attempt:
                self._gaps.append((now - self._last_delta_ns) / 1e9)
            self._last_delta_ns, self._last_attempt = now, item.attempt
            if item.attempt == 1:
                return self._first(item, "delta", _FIRSTS.get(delta.type))
        elif kind == "message_delta":
            self._output_tokens[item.attempt] = event.usage.output_tokens
        elif kind == "message_stop":
            self._stop_ns = now
        elif kind == "message_start" and item.attempt == 1:
            return self._first(item, "message_start", None)
        elif kind == "rillet.headers" and item.attempt == 1 and self._headers is None:
            if event.sent_ns is not None:
                self._start = event.sent_ns
            self._headers = self._seconds(now)
        elif kind == "rillet.attempt" and item.attempt == 1:
            self._start = now  # until the headers tell when the request reached the transport
        return (item,)

    def finish(self) -> Sequence[Item]:
        firsts = self._firsts
        end = self._seconds(self._stop_ns if self._stop_ns is not None else self._last_ns)
        ttft = firsts.get("delta")
        output_tokens = sum(self._output_tokens.values())
        tpot = None
        if ttft is not None and output_tokens > 1 and not self._retried:
            tpot = (end - ttft) / (output_tokens - 1)
        summary = LatencySummary(
            to_headers=self._headers,
            to_message_start=firsts.get("message_start"),
            to_first_delta=ttft,
            to_first_text=firsts.get("text"),
            to_first_thinking=firsts.get("thinking"),
            end_to_end=end,
            time_per_output_token=tpot,
            gaps=self._gaps,
            output_tokens=output_tokens,
        )
        return (self._ctx.item(summary),)

    def _first(self, item: Item, kind: FirstKind, also: FirstKind | None) -> Sequence[Item]:
        """The item, with a :class:`FirstToken` for each of ``kind`` and ``also`` not seen before."""
        firsts = self._firsts
        if kind in firsts and (also is None or also in firsts):
            return (item,)
        out = [item]
        for name in (kind, also):
            if name is not None and name not in firsts:
                firsts[name] = seconds = self._seconds(item.received_ns)
                out.append(item.derive(FirstToken(name, seconds)))
        return out

    def _seconds(self, ns: int) -> float:
        return (ns - self._start) / 1e9
