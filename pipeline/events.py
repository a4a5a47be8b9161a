"""What travels through the pipeline.

The API's events travel unchanged inside an :class:`Item` envelope: the SDK's own typed events
(``anthropic.types.RawMessageStreamEvent``, or whatever model the SDK builds for an event type it
does not know), except the deltas that stream text, which are :class:`pipeline.fast_events.BlockDelta`
(the same attributes, and ``.to_sdk()`` for the SDK's model).
Stages add a few small frozen dataclasses of their own, each with a ``type`` string starting with
``rillet.`` so that sinks dispatch on ``item.event.type`` alone, whatever the event's origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["completed", "aborted_repetition", "error", "cancelled"]
"""How a logical stream ended: a bounded label set, shared by metrics, summaries and the browser."""


@dataclass(slots=True)
class Item:
    """One event of one logical stream, stamped before it entered any queue.

    ``received_ns`` is ``time.perf_counter_ns()`` when the source read the event off the wire (for
    events a stage derives, that of the event that caused it). ``seq`` is assigned by the stage chain
    as the item leaves it, so it is gap-free and increasing per stream; sinks treat items as read-only.
    ``delivered_ns`` is when the runner handed the item to the sinks (0 for items no runner
    delivered): less ``received_ns``, the client's own delay (:mod:`pipeline.client_delay`).
    """

    stream_id: str
    event: Any
    received_ns: int
    attempt: int = 1
    seq: int = -1
    delivered_ns: int = 0

    def derive(self, event: Any) -> Item:
        """A new item caused by this one: same stream, attempt and receive time."""
        return Item(self.stream_id, event, self.received_ns, self.attempt)


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """An HTTP attempt of a logical stream began (the first, or a retry or resume)."""

    attempt: int
    strategy: str
    reason: str
    type: Literal["rillet.attempt"] = "rillet.attempt"


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    """The attempt's response headers arrived: the first moment the server answered.

    ``sent_ns`` is when this attempt's request went to the socket (``perf_counter_ns``; None when
    the client does not stamp it, see :mod:`pipeline.client`).
    """

    attempt: int
    request_id: str | None
    status_code: int
    sent_ns: int | None = None
    type: Literal["rillet.headers"] = "rillet.headers"


@dataclass(frozen=True, slots=True)
class BlockCompleted:
    """A content block stopped; ``block`` is its final JSON form, tool input already parsed."""

    index: int
    block: dict[str, Any]
    type: Literal["rillet.block_completed"] = "rillet.block_completed"


@dataclass(frozen=True, slots=True)
class ToolInputError:
    """A tool_use block's accumulated input is not valid JSON; the raw text is kept."""

    index: int
    message: str
    raw_json: str
    type: Literal["rillet.tool_input_error"] = "rillet.tool_input_error"


@dataclass(frozen=True, slots=True)
class FirstToken:
    """A first-of-its-kind moment of a stream: ``message_start``, any delta, or a text delta."""

    kind: Literal["message_start", "delta", "text", "thinking"]
    seconds: float
    type: Literal["rillet.first_token"] = "rillet.first_token"


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """A stream's timings, all in seconds from the start of its first attempt."""

    to_headers: float | None
    to_message_start: float | None
    to_first_delta: float | None
    to_first_text: float | None
    to_first_thinking: float | None
    end_to_end: float
    time_per_output_token: float | None
    gaps: Sequence[float]
    """Inter-delta gaps, in a compact ``array('f')`` (single precision, 4 bytes a delta): a long
    stream keeps one per delta, a benchmark thousands of streams' worth."""
    output_tokens: int
    type: Literal["rillet.latency"] = "rillet.latency"


@dataclass(frozen=True, slots=True)
class RepetitionDetected:
    """The tail of the text repeats a passage of ``period`` characters ``repeats`` times."""

    period: int
    repeats: float
    span: int
    action: Literal["warn", "abort"]
    sample: str
    type: Literal["rillet.repetition"] = "rillet.repetition"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts summed over every HTTP attempt of a logical stream."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CostUpdate:
    """The stream's cost so far, in USD; ``estimated`` until the final usage of every attempt is in."""

    usd: float
    estimated: bool
    model: str
    usage: Usage
    attempts: int
    saved_usd: float = 0.0
    """What resuming saved against restarting: the output a restart would have generated again, less
    the input the resumes paid again for the text sent back."""
    type: Literal["rillet.cost"] = "rillet.cost"


@dataclass(frozen=True, slots=True)
class AbortRequested:
    """A stage asks the runner to close the upstream response and end the stream with ``outcome``."""

    outcome: Outcome
    reason: str
    type: Literal["rillet.abort"] = "rillet.abort"


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The last item of every logical stream, whatever the way it ended."""

    outcome: Outcome
    stop_reason: str | None
    error: str | None = None
    error_type: str | None = None
    type: Literal["rillet.end"] = "rillet.end"


@dataclass(frozen=True, slots=True)
class MessageAccumulated:
    """The final message, in the shape of the SDK's ``Message.model_dump(mode="json")``, None keys removed."""

    message: dict[str, Any] = field(repr=False)
    complete: bool
    type: Literal["rillet.message"] = "rillet.message"


def event_type(item: Item) -> str:
    """The type string of an item's event, for SDK models, unknown models and rillet events alike."""
    return str(getattr(item.event, "type", "unknown"))


def report_text(item: Item) -> str:
    """The text an item adds to the report: a ``text_delta``'s text, else the empty string."""
    event = item.event
    if getattr(event, "type", None) != "content_block_delta":
        return ""
    delta = getattr(event, "delta", None)
    if getattr(delta, "type", None) != "text_delta":
        return ""
    return getattr(delta, "text", None) or ""


STREAMED_TEXT_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}
"""Delta types that stream text, each with the attribute holding it: what meters count and watch."""


def streamed_text(delta: Any) -> str | None:
    """The text a delta streams (answer, thinking or tool input), or ``None`` for other delta types."""
    attribute = STREAMED_TEXT_FIELDS.get(delta.type)
    return None if attribute is None else str(getattr(delta, attribute))
