"""The Messages API's event stream, decoded without the SDK's per-event pydantic work.

Building the SDK's model of each event (``construct_type`` against the union of event types) cost
more than everything the pipeline does with it: about 27 µs of a delta's CPU, where a jiter parse
into a slotted object costs 2. Nearly every event of a stream is a text, thinking or tool-input
delta, so those become a :class:`BlockDelta`: the same attributes as the SDK's
``RawContentBlockDeltaEvent`` (``type``, ``index``, ``delta.type``, ``delta.text`` …), the event's
JSON as the wire sent it (:attr:`BlockDelta.raw`, which a JSON-lines log writes as it is), and
:meth:`BlockDelta.to_sdk` for the SDK's own model. Every other event, a handful per stream and any
type the SDK does not know, is still the SDK's own model, built by the SDK's ``construct_type`` as
its stream iterator builds it.

:class:`EventParser` decodes as the SDK's stream iterator does (``anthropic._streaming``): lines
split on CR, LF or CRLF, ``ping`` skipped, events without a name or data skipped, an event left
without its blank line at the end of the body dropped, and an ``error`` event raised as the SDK
raises it (:func:`stream_error`), so failures are classified as before (:mod:`pipeline.source._failure`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from jiter import from_json

if TYPE_CHECKING:
    import httpx2
    from anthropic import APIStatusError, AsyncAnthropic
    from anthropic.types import RawMessageStreamEvent


@dataclass(slots=True)
class TextDelta:
    """The SDK's ``TextDelta``, as plain data."""

    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(slots=True)
class ThinkingDelta:
    """The SDK's ``ThinkingDelta``, as plain data."""

    thinking: str
    type: Literal["thinking_delta"] = "thinking_delta"


@dataclass(slots=True)
class InputJSONDelta:
    """The SDK's ``InputJSONDelta``, as plain data."""

    partial_json: str
    type: Literal["input_json_delta"] = "input_json_delta"


Delta = TextDelta | ThinkingDelta | InputJSONDelta

_DELTAS: dict[object, tuple[str, Callable[[str], Delta]]] = {
    "text_delta": ("text", TextDelta),
    "thinking_delta": ("thinking", ThinkingDelta),
    "input_json_delta": ("partial_json", InputJSONDelta),
}
"""The delta types a :class:`BlockDelta` carries, each with its one string field."""


class BlockDelta:
    """A ``content_block_delta`` that streams text: the SDK event's attributes, without its model.

    Only events holding exactly the fields the SDK's model has are taken (any other goes to the
    SDK's own model), so :meth:`model_dump` and :meth:`to_sdk` lose nothing the wire sent. Not a
    dataclass: sinks tell rillet's own events by that.
    """

    __slots__ = ("delta", "index", "raw")

    type: Literal["content_block_delta"] = "content_block_delta"

    def __init__(self, index: int, delta: Delta, raw: bytes) -> None:
        self.index = index
        self.delta = delta
        self.raw = raw
        """The event's JSON as the wire sent it, on one line."""

    def to_sdk(self) -> RawMessageStreamEvent:
        """The SDK's own model of this event, as its stream iterator would have built it."""
        return cast("RawMessageStreamEvent", sdk_event(self.model_dump()))

    def model_dump(self, **_: object) -> dict[str, Any]:
        """The event as JSON-ready data: what the SDK model's ``model_dump`` gives, whatever the options
        (every field is set and plain)."""
        return {"type": self.type, "index": self.index, "delta": asdict(self.delta)}

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        """A copy with ``update`` applied, as the SDK model's ``model_copy`` (the stitcher re-indexes)."""
        value = self.model_dump() | (update or {})
        return build(json.dumps(value, separators=(",", ":")).encode(), value)  # ASCII: a lone surrogate too

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlockDelta):
            return NotImplemented
        return self.index == other.index and self.delta == other.delta

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BlockDelta(index={self.index!r}, delta={self.delta!r})"


def to_sdk(event: Any) -> Any:
    """The SDK's own model of any event from the API (those not a :class:`BlockDelta` already are)."""
    return event.to_sdk() if isinstance(event, BlockDelta) else event


def observed(event: Any) -> Any:
    """An event as the SDK's tracing reads it, which reads models and dicts but not other objects.

    Its span of a streamed call takes the time to the first delta, the message's fields and the
    ``OK`` status from the events it is shown, as the SDK's stream iterator shows them.
    """
    return event.model_dump() if isinstance(event, BlockDelta) else event


def build(data: bytes, value: Any) -> Any:
    """The event for one ``data`` payload and its parsed JSON: a :class:`BlockDelta`, or the SDK's model."""
    if type(value) is dict and len(value) == 3 and value.get("type") == "content_block_delta":
        index, delta = value.get("index"), value.get("delta")
        if type(index) is int and type(delta) is dict and len(delta) == 2:
            kind = _DELTAS.get(delta.get("type"))
            if kind is not None:
                text = delta.get(kind[0])
                if type(text) is str:
                    return BlockDelta(index, kind[1](text), data)
    return sdk_event(value)


def sdk_event(value: Any) -> Any:
    """The SDK's model of an event's parsed JSON, built as its stream iterator builds it.

    The SDK is imported here, on the first event: the JSON-lines sink imports this module, and
    commands that never stream (``rillet jobs --help``) must not pay for loading the SDK.
    """
    from anthropic._models import construct_type
    from anthropic.types import RawMessageStreamEvent

    return construct_type(type_=RawMessageStreamEvent, value=value)


def parse(data: bytes) -> Any:
    """One event's ``data`` as the SDK's ``json.loads`` reads it, by jiter where jiter can.

    jiter refuses a lone surrogate escape (``\\ud83d``), which ``json.loads`` decodes; such data is
    read by ``json.loads``, so nothing the SDK accepted is refused.
    """
    try:
        return from_json(data, cache_mode="keys")
    except ValueError:
        return json.loads(data.decode())


class EventParser:
    """Turns body chunks into events, however the body is split.

    ``fail`` makes the exception an ``error`` event raises, given its data.
    """

    __slots__ = ("_carry_cr", "_data", "_event", "_fail", "_pending")

    def __init__(self, fail: Callable[[str], Exception]) -> None:
        self._fail = fail
        self._pending: list[bytes] = []
        """The pieces of a line that no chunk has ended yet (joined once, however many chunks it spans)."""
        self._carry_cr = False
        """The last chunk ended a line with CR: an LF opening the next chunk belongs to it."""
        self._event: bytes | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> Iterator[Any]:
        """The events that ``chunk`` completes, in order; raises at an ``error`` event.

        Lazily: the events of a large chunk are not all alive at once for the garbage collector to scan.
        """
        if self._carry_cr:
            self._carry_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if not chunk:
            return
        self._carry_cr = chunk.endswith(b"\r")
        lines = chunk.splitlines()
        tail = None if chunk.endswith((b"\n", b"\r")) else lines.pop()
        pending = self._pending
        if pending and lines:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()
        if tail is not None:
            pending.append(tail)
        name, data = self._event, self._data
        for line in lines:
            if not line:
                if name is not None or data:
                    self._event, self._data = None, []
                    event = self._dispatch(name, data)
                    if event is not None:
                        yield event
                    name, data = None, self._data
            elif line.startswith(b"data: "):  # the usual form first; _field reads any other
                data.append(line[6:])
            elif line.startswith(b"event: "):
                name = line[7:] or None
            else:
                name = self._field(line, name, data)
        self._event = name

    @staticmethod
    def _field(line: bytes, name: bytes | None, data: list[bytes]) -> bytes | None:
        """Reads any field line into ``data``; returns the event name it leaves."""
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            return value or None
        return name

    def _dispatch(self, name: bytes | None, data: list[bytes]) -> Any:
        if name is None or name == b"ping":
            return None
        if len(data) == 1:
            joined = data[0]
            if name != b"error" and joined:
                return build(joined, parse(joined))
        else:
            joined = b"\n".join(data)  # not one line: not a JSON line's raw
        if name == b"error":
            raise self._fail(joined.decode())
        return sdk_event(parse(joined)) if joined else None


def stream_error(client: AsyncAnthropic, response: httpx2.Response, data: str) -> APIStatusError:
    """An in-stream ``error`` event as the SDK's stream iterator raises it (status 200, body parsed)."""
    body: object = data
    try:
        body = json.loads(data)
        message = f"{body}"
    except ValueError:
        message = data or f"Error code: {response.status_code}"
    return client._make_status_error(message, body=body, response=response)
