"""The shape the pipeline relies on in each known stream event, checked before a recording's event
is built.

The SDK builds events without validating them (``construct_type``), which is right for a live
stream from the API, but a recording can say anything: ``"index": "zero"`` or ``"delta": 5`` would
be built as given and fail deep inside a stage. Validating against the SDK's full models would
refuse tomorrow's block types and stop reasons, which the SDK itself lets through. So these models
describe only what the stages and sinks read: the fields' JSON types, strictly (``"5"`` is not an
int), with every other key and every unknown ``type`` value allowed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

_Count = Annotated[StrictInt, Field(ge=0)]


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Tagged(_Shape):
    """A content block or delta: an object naming its type; its other fields are the SDK's business."""

    type: StrictStr


class _Usage(_Shape):
    """The counts the cost and latency stages read, never negative; the API always sends output_tokens."""

    input_tokens: _Count | None = None
    output_tokens: _Count
    cache_creation_input_tokens: _Count | None = None
    cache_read_input_tokens: _Count | None = None


class _Message(_Shape):
    id: StrictStr | None = None
    model: StrictStr | None = None
    content: list[_Tagged] = []
    stop_reason: StrictStr | None = None
    stop_sequence: StrictStr | None = None
    usage: _Usage | None = None


class _MessageStart(_Shape):
    message: _Message


class _StopDelta(_Shape):
    stop_reason: StrictStr | None = None
    stop_sequence: StrictStr | None = None


class _MessageDelta(_Shape):
    delta: _StopDelta
    usage: _Usage
    """Always sent by the API; the stages read its cumulative counts."""


class _BlockStart(_Shape):
    index: StrictInt
    content_block: _Tagged


class _BlockDelta(_Shape):
    index: StrictInt
    delta: _Tagged


class _BlockStop(_Shape):
    index: StrictInt


SHAPES: dict[str, type[_Shape]] = {
    "message_start": _MessageStart,
    "message_delta": _MessageDelta,
    "content_block_start": _BlockStart,
    "content_block_delta": _BlockDelta,
    "content_block_stop": _BlockStop,
}
"""``message_stop`` carries nothing the pipeline reads; unknown event types pass through untouched."""


def shape_problem(value: dict[str, Any]) -> str | None:
    """What is wrong with a known event's shape, in a few words naming the key; None if nothing."""
    shape = SHAPES.get(value["type"])
    if shape is None:
        return None
    try:
        shape.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        return f"{key}: {error['msg']} (got {_brief(error['input'])})"
    return None


def _brief(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
