"""The final message, accumulated as the SDK's ``messages.stream()`` helper does, at a fraction of its cost.

:meth:`AccumulateStage.snapshot` equals, field for field, the SDK's
``get_final_message().model_dump(mode="json")`` with None-valued keys removed (the shape of
``shared/fixtures/sse/expected``). The SDK rebuilds pydantic state and re-parses a tool's whole
input on every delta; here a delta only appends its string to a :class:`~pipeline._text_buffer.TextBuffer`,
so the hot path costs a few µs and the text is kept compactly; tool input is parsed once, when its
block stops.

Rules taken from the SDK (``anthropic.lib.streaming._messages.accumulate_event``): text and
thinking deltas grow only blocks of their own type, ``input_json_delta`` only ``tool_use`` and
``server_tool_use`` blocks; a signature replaces, a citation appends; block and delta types the SDK
does not model keep the fields their ``content_block_start`` gave and change nothing. On
``message_delta`` the stop fields are replaced, ``container`` only when given, and usage counts,
cumulative totals, overwrite: ``output_tokens`` always, the optional ones only when present.

Where rillet goes further: a tool input that is not valid JSON at its block's stop yields a
:class:`~pipeline.events.ToolInputError` carrying the raw text, and the block keeps what the SDK's
partial parser makes of it (the ``content_block_start`` input if even that fails); a tool input
is never stripped of its nulls, which are the model's data. A resumed attempt's ``message_start``
does not reset the message: content carries on, and usage becomes the sum over attempts; its
``content_block_start`` for an index already open with the same type continues that block.
"""

from __future__ import annotations

from typing import Any

from jiter import from_json

from pipeline._text_buffer import TextBuffer
from pipeline.events import BlockCompleted, Item, MessageAccumulated, ToolInputError
from pipeline.stages._base import StreamContext

_GROWN_BY: dict[str, tuple[str, str, str]] = {
    "text": ("text_delta", "text", "text"),
    "thinking": ("thinking_delta", "thinking", "thinking"),
    "tool_use": ("input_json_delta", "partial_json", "input"),
    "server_tool_use": ("input_json_delta", "partial_json", "input"),
}
"""Block type → (the delta type that grows it, the delta's string field, the block key it fills)."""

_OPTIONAL_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "output_tokens_details",
)
"""``message_delta`` usage fields that overwrite only when present, as in the SDK."""

_OPEN: Any = object()
"""A tool block's parsed input while the block has not stopped (``None`` is valid JSON)."""


class AccumulateStage:
    """Passes every item through and builds the message they describe; emits per-block results."""

    def __init__(self, ctx: StreamContext) -> None:
        self._ctx = ctx
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, _Block] = {}
        self._usage: dict[int, dict[str, Any]] = {}
        self._attempt_usage: dict[str, Any] = {}
        self._stopped = False

    def process(self, item: Item) -> tuple[Item, ...]:
        """The item, then on a block stop any :class:`ToolInputError` and a :class:`BlockCompleted`."""
        event = item.event
        kind = event.type
        if kind == "content_block_delta":
            block = self._blocks.get(event.index)
            if block is not None:
                delta = event.delta
                if delta.type == block.grown_by:
                    value = getattr(delta, block.field)
                    if isinstance(value, str):
                        block.text.append(value)
                else:
                    block.annotate(delta)
        elif kind == "content_block_stop":
            block = self._blocks.get(event.index)
            if block is not None:
                return (item, *block.stop(item, event.index))
        elif kind == "content_block_start":
            self._open(event.index, _Block(event.content_block))
        elif kind == "message_delta":
            self._apply_delta(event)
        elif kind == "message_start":
            self._start(item.attempt, event.message)
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "rillet.attempt" and event.strategy == "restart":
            self._blocks = {}  # a new generation: the partial content is void, its usage still counts
        return (item,)

    def finish(self) -> tuple[Item, ...]:
        """The accumulated message, marked complete if ``message_stop`` ended it; nothing if none began."""
        if self._message is None:
            return ()
        return (self._ctx.item(MessageAccumulated(self.snapshot(), complete=self._stopped)),)

    def snapshot(self) -> dict[str, Any]:
        """The message so far as the SDK would dump it, None-valued keys removed; ``{}`` before it starts."""
        if self._message is None:
            return {}
        message = {key: _strip(value) for key, value in self._message.items() if value is not None}
        message["content"] = [block.dump() for block in self._blocks.values()]
        message["usage"] = _strip(_total(list(self._usage.values())))
        return message

    def text(self) -> str:
        """The text of all text blocks so far, for a live view."""
        return "".join(block.text.value() for block in self._blocks.values() if block.type == "text")

    def _open(self, index: int, block: _Block) -> None:
        previous = self._blocks.get(index)
        if previous is not None and previous.key and previous.type == block.type:
            if block.text:  # a resumed attempt carrying on the same block
                previous.text.append(block.text.value())
            previous.input = _OPEN
        else:
            self._blocks[index] = block

    def _start(self, attempt: int, message: Any) -> None:
        if message is None:
            return
        dumped: dict[str, Any] = message.model_dump(mode="json", warnings=False)
        self._attempt_usage = self._usage[attempt] = dumped.pop("usage", None) or {}
        self._stopped = False
        if self._message is None:
            self._blocks = {index: _Block(block) for index, block in enumerate(message.content or ())}
            self._message = dumped

    def _apply_delta(self, event: Any) -> None:
        if self._message is None:
            return
        delta, usage, message = event.delta, event.usage, self._message
        message["stop_reason"] = delta.stop_reason
        message["stop_sequence"] = delta.stop_sequence
        message["stop_details"] = _json(delta.stop_details)
        if delta.container is not None:
            message["container"] = _json(delta.container)
        if usage is not None:
            self._attempt_usage["output_tokens"] = usage.output_tokens
            for key in _OPTIONAL_USAGE:
                value = getattr(usage, key)
                if value is not None:
                    self._attempt_usage[key] = _json(value)


class _Block:
    """One content block: its start fields, and the strings its deltas appended."""

    __slots__ = ("base", "field", "grown_by", "input", "key", "text", "type")

    def __init__(self, block: Any) -> None:
        dumped: dict[str, Any] = block.model_dump(mode="json", warnings=False)
        self.base: dict[str, Any] = _strip(dumped)
        if dumped.get("input") is not None:
            self.base["input"] = dumped["input"]
        self.type: str = dumped.get("type") or ""
        self.grown_by, self.field, self.key = _GROWN_BY.get(self.type, ("", "", ""))
        start = self.base.get(self.key)
        self.text = TextBuffer()
        if isinstance(start, str):
            self.text.append(start)
        self.input: Any = _OPEN

    def annotate(self, delta: Any) -> None:
        """The deltas that replace or extend a field rather than grow the main string."""
        kind = delta.type
        if kind == "signature_delta" and self.type == "thinking":
            self.base["signature"] = delta.signature
        elif kind == "citations_delta" and self.type == "text":
            citation = _strip(_json(delta.citation))
            self.base["citations"] = [*self.base.get("citations", ()), citation]

    def stop(self, item: Item, index: int) -> tuple[Item, ...]:
        """Tool input parsed once, strictly; the block's final form announced."""
        error: tuple[Item, ...] = ()
        if self.key == "input":
            raw = self.text.value()
            try:
                self.input = from_json(raw.encode()) if raw else self.base.get("input")
            except ValueError as exc:
                self.input = _partial(raw, self.base.get("input"))
                name = self.base.get("name")
                message = f"the input of tool block {index} ({name!r}) is not valid JSON: {exc}"
                error = (item.derive(ToolInputError(index, message, raw)),)
        return (*error, item.derive(BlockCompleted(index, self.dump())))

    def dump(self) -> dict[str, Any]:
        """The block as the SDK would dump it now; tool input parsed partially until the block stops."""
        block = dict(self.base)
        if self.key == "input":
            if self.input is not _OPEN:
                block["input"] = self.input
            elif raw := self.text.value():
                block["input"] = _partial(raw, block.get("input"))
        elif self.text:
            block[self.key] = self.text.value()
        return block


def _partial(raw: str, fallback: Any) -> Any:
    """What the SDK's snapshot holds for a tool input: its partial-mode parse."""
    try:
        return from_json(raw.encode(), partial_mode=True)
    except ValueError:
        return fallback


def _json(value: Any) -> Any:
    """A model as JSON-ready data; plain values as they are."""
    dump = getattr(value, "model_dump", None)
    return value if dump is None else dump(mode="json", warnings=False)


def _strip(value: Any) -> Any:
    """Drops None-valued keys at every depth, as the expected results do."""
    if isinstance(value, dict):
        return {key: _strip(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def _total(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """Usage summed over attempts: counts add up, labels such as ``service_tier`` take the latest."""
    if len(usages) == 1:
        return usages[0]
    total: dict[str, Any] = {}
    for usage in usages:
        total = _add(total, usage)
    return total


def _add(total: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    merged = dict(total)
    for key, value in usage.items():
        before = merged.get(key)
        if isinstance(value, int) and isinstance(before, int) and not isinstance(value, bool):
            merged[key] = before + value
        elif isinstance(value, dict) and isinstance(before, dict):
            merged[key] = _add(before, value)
        elif value is not None:
            merged[key] = value
    return merged
