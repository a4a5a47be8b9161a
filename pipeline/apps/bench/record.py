"""One benchmark request as measured: the load generator's times plus the pipeline's own figures.

Timings come from :class:`~pipeline.stages.latency.LatencyStage` and cost from
:class:`~pipeline.stages.cost.CostStage`; :class:`RecordStage` only notes what they do not keep
(each attempt's request id and status, when the first attempt was begun and sent, and how much
text each content chunk carried), reading items, never re-timing them.

Per-token ITL: Claude streams several tokens per ``content_block_delta`` and the API reports only
the total (usage), so each chunk's share of the output tokens is estimated from its characters
(:func:`split_tokens`), and each gap is divided over the tokens of the chunk it ends
(:attr:`RequestRecord.itl`). vLLM's servers stream one token per chunk, so there the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.events import AttemptStarted, Item, ResponseHeaders
from pipeline.runner import StreamResult
from pipeline.stages import StreamContext
from pipeline.stages.latency import content_chars


class RecordStage:
    """Notes each attempt's request id and the first attempt's send times; passes every item on."""

    def __init__(self, ctx: StreamContext) -> None:
        self.request_ids: list[str] = []
        self.statuses: list[int] = []
        self.sent_ns: int | None = None
        self.transport_ns: int | None = None
        self.chunk_chars: list[int] = []

    def process(self, item: Item) -> Sequence[Item]:
        event = item.event
        if event.type == "content_block_delta" and item.attempt == 1:
            chars = content_chars(event.delta)
            if chars is not None:
                self.chunk_chars.append(chars)
        elif isinstance(event, ResponseHeaders):
            self.statuses.append(event.status_code)
            if event.request_id:
                self.request_ids.append(event.request_id)
            if event.attempt == 1:
                self.transport_ns = event.sent_ns
        elif isinstance(event, AttemptStarted) and self.sent_ns is None:
            self.sent_ns = item.received_ns
        return (item,)

    def finish(self) -> Sequence[Item]:
        return ()


@dataclass(slots=True)
class RequestRecord:
    """Everything the results need about one request; times in seconds unless named ``_ns``.

    ``start_ns`` is when the stream started (``StreamContext.started_ns``), ``sent_ns`` when its
    first attempt called the SDK and ``transport_ns`` when that request went to the socket: the
    latency clock's zero. ``scheduled_ns`` is when an open loop meant to send it,
    ``released_ns`` when the sender actually woke for it and ``slot_ns`` when it got a
    concurrency slot. All ``_ns`` are ``time.perf_counter_ns()``, one
    clock for every process on the machine, so several workers' records merge.
    """

    index: int
    worker: int
    request_id: str | None
    outcome: str
    error_type: str | None
    stop_reason: str | None
    attempts: int
    max_tokens: int
    start_ns: int
    end_ns: int
    released_ns: int
    slot_ns: int
    scheduled_ns: int | None = None
    sent_ns: int | None = None
    transport_ns: int | None = None
    to_headers: float | None = None
    to_message_start: float | None = None
    ttft: float | None = None
    ttft_text: float | None = None
    ttft_thinking: float | None = None
    e2e: float | None = None
    tpot: float | None = None
    chunk_gaps: list[float] = field(default_factory=list)
    """Every gap between successive content chunks (per chunk, rillet's ``chunk_gap``)."""
    chunk_tokens: list[int] = field(default_factory=list)
    """Output tokens of each content chunk (estimated, :func:`split_tokens`); empty when unknown."""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float | None = None
    cost_estimated: bool = False
    server_ttft: float | None = None
    ttft_error: float | None = None
    ttft_error_send: float | None = None
    ttft_error_receive: float | None = None
    client_delay: dict[str, Any] | None = None
    """The stream's :class:`~pipeline.client_delay.ClientDelay` as JSON: each item's arrival at
    the socket → its hand-over to the sinks."""

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"

    @property
    def schedule_lag(self) -> float | None:
        """How late the sender was against the absolute clock (open loop only)."""
        return None if self.scheduled_ns is None else (self.released_ns - self.scheduled_ns) / 1e9

    @property
    def slot_wait(self) -> float:
        """Time waiting for a concurrency slot, kept out of TTFT and E2E."""
        return (self.slot_ns - self.released_ns) / 1e9

    @property
    def request_build(self) -> float | None:
        """The SDK building the request (SDK call → transport): client time kept out of TTFT."""
        if self.sent_ns is None or self.transport_ns is None:
            return None
        return (self.transport_ns - self.sent_ns) / 1e9

    @property
    def ttft_from_call(self) -> float | None:
        """TTFT with the clock started just before the SDK call, request building included."""
        build = self.request_build
        return None if self.ttft is None or build is None else self.ttft + build

    @property
    def itl(self) -> list[float]:
        """Per-token ITL (vLLM's): each chunk gap divided over the tokens of the chunk it ends, once
        per token; the per-chunk gaps when the chunks' tokens are unknown."""
        if len(self.chunk_tokens) != len(self.chunk_gaps) + 1:
            return list(self.chunk_gaps)
        return [
            gap / k for gap, k in zip(self.chunk_gaps, self.chunk_tokens[1:], strict=True) for _ in range(k)
        ]

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "schedule_lag": self.schedule_lag,
            "slot_wait": self.slot_wait,
            "request_build": self.request_build,
            "ttft_from_call": self.ttft_from_call,
            "itl": self.itl,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**fields)


def split_tokens(total: int, chars: Sequence[int]) -> list[int]:
    """``total`` tokens dealt over chunks of ``chars`` characters: one each, the rest in proportion
    to the characters (evenly when none has any), largest remainders first and ties to the earlier
    chunk. A chunk with content carries at least one token, whatever the total says."""
    n = len(chars)
    rest = total - n
    if n == 0 or rest <= 0:
        return [1] * n
    weight = sum(chars)
    shares = [rest * c / weight for c in chars] if weight else [rest / n] * n
    tokens = [int(share) for share in shares]
    by_remainder = sorted(range(n), key=lambda i: (tokens[i] - shares[i], i))
    for i in by_remainder[: rest - sum(tokens)]:
        tokens[i] += 1
    return [1 + t for t in tokens]


_STATUS = re.compile(r"(\d{3}) ")


def error_key(result: StreamResult, stage: RecordStage) -> str | None:
    """Errors by what a user must tell apart: an HTTP status, an error event mid-stream, a drop.

    ``http_429_rate_limit_error`` and ``http_529_overloaded_error`` were answered before any
    event; ``stream_overloaded_error`` (an ``event: error``) and ``stream_connection_error`` (a
    drop) came after the stream's headers.
    """
    if result.outcome != "error":
        return None
    kind = result.error_type or "error"
    if 200 in stage.statuses:
        return f"stream_{kind}"
    status = _STATUS.match(result.error or "")
    return f"http_{status[1]}_{kind}" if status else kind


def build_record(
    result: StreamResult,
    stage: RecordStage,
    *,
    index: int,
    worker: int,
    max_tokens: int,
    start_ns: int,
    end_ns: int,
    released_ns: int,
    slot_ns: int,
    scheduled_ns: int | None,
) -> RequestRecord:
    """The record of a finished stream, from its result and what :class:`RecordStage` noted."""
    latency, cost = result.latency, result.cost
    record = RequestRecord(
        index=index,
        worker=worker,
        request_id=stage.request_ids[-1] if stage.request_ids else None,
        outcome=result.outcome,
        error_type=error_key(result, stage),
        stop_reason=result.stop_reason,
        attempts=result.attempts,
        max_tokens=max_tokens,
        start_ns=start_ns,
        end_ns=end_ns,
        released_ns=released_ns,
        slot_ns=slot_ns,
        scheduled_ns=scheduled_ns,
        sent_ns=stage.sent_ns,
        transport_ns=stage.transport_ns,
        client_delay=result.client_delay.to_json(),
    )
    if latency is not None:
        record.to_headers = latency.to_headers
        record.to_message_start = latency.to_message_start
        record.ttft = latency.to_first_delta
        record.ttft_text = latency.to_first_text
        record.ttft_thinking = latency.to_first_thinking
        record.e2e = latency.end_to_end
        record.tpot = latency.time_per_output_token
        record.chunk_gaps = list(latency.gaps)
        record.output_tokens = latency.output_tokens
        if len(stage.chunk_chars) == len(record.chunk_gaps) + 1 and result.attempts == 1:
            record.chunk_tokens = split_tokens(latency.output_tokens, stage.chunk_chars)
    if cost is not None:
        usage = cost.usage
        record.input_tokens = usage.input_tokens
        record.cache_read_input_tokens = usage.cache_read_input_tokens
        record.cache_creation_input_tokens = usage.cache_creation_input_tokens
        record.output_tokens = record.output_tokens or usage.output_tokens
        record.cost_usd = cost.usd
        record.cost_estimated = cost.estimated
    return record
