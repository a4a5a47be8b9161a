"""The stitcher on hand-made SDK events: block indices, whitespace, held tool calls, restarts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from anthropic.types import (
    InputJSONDelta,
    Message,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    Usage,
)
from anthropic.types.raw_message_delta_event import Delta

from pipeline.source._stitch import Join, Stitcher


def start() -> RawMessageStartEvent:
    message = Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-haiku-4-5",
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=Usage(input_tokens=10, output_tokens=1),
    )
    return RawMessageStartEvent(type="message_start", message=message)


def text_block(index: int) -> RawContentBlockStartEvent:
    block = TextBlock(type="text", text="", citations=None)
    return RawContentBlockStartEvent(type="content_block_start", index=index, content_block=block)


def tool_block(index: int) -> RawContentBlockStartEvent:
    block = ToolUseBlock(type="tool_use", id="toolu_1", name="lookup", input={})
    return RawContentBlockStartEvent(type="content_block_start", index=index, content_block=block)


def text(index: int, value: str) -> RawContentBlockDeltaEvent:
    return RawContentBlockDeltaEvent(
        type="content_block_delta", index=index, delta=TextDelta(type="text_delta", text=value)
    )


def json_part(index: int, value: str) -> RawContentBlockDeltaEvent:
    delta = InputJSONDelta(type="input_json_delta", partial_json=value)
    return RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta)


def stop(index: int) -> RawContentBlockStopEvent:
    return RawContentBlockStopEvent(type="content_block_stop", index=index)


def end(reason: str = "end_turn") -> list[Any]:
    delta = Delta(stop_reason=reason, stop_sequence=None)  # type: ignore[arg-type]
    usage = MessageDeltaUsage(output_tokens=5)
    return [
        RawMessageDeltaEvent(type="message_delta", delta=delta, usage=usage),
        RawMessageStopEvent(type="message_stop"),
    ]


def attempt(stitcher: Stitcher, join: Join | None, events: Iterable[Any]) -> list[Any]:
    out = list(stitcher.begin(join))
    for event in events:
        out.extend(stitcher.feed(event))
    out.extend(stitcher.salvage())
    return out


def summary(events: list[Any]) -> list[tuple[str, int | None, str]]:
    """(type, index, text or JSON) of each event, for readable assertions."""
    rows = []
    for event in events:
        delta = getattr(event, "delta", None)
        value = getattr(delta, "text", None) or getattr(delta, "partial_json", None) or ""
        rows.append((event.type, getattr(event, "index", None), value))
    return rows


def texts(events: list[Any]) -> str:
    return "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def test_prefill_join_continues_the_open_block_without_doubling_a_paragraph_break() -> None:
    """The continuation's start is suppressed, its deltas go to the open block, one stop is sent."""
    stitcher = Stitcher(hold_tools=True)
    first = attempt(
        stitcher, None, [start(), text_block(0), text(0, "Hello"), text(0, " world."), text(0, "\n")]
    )
    second = attempt(
        stitcher, "prefill", [start(), text_block(0), text(0, "\n"), text(0, "\nNext"), stop(0), *end()]
    )
    assert texts(first + second) == "Hello world.\n\nNext"
    assert [row[:2] for row in summary(second)] == [
        ("message_start", None),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("message_delta", None),
        ("message_stop", None),
    ]


def test_continue_join_removes_the_restated_words() -> None:
    """A continue turn's restatement is held back, cut, and the rest sent to the open block."""
    stitcher = Stitcher(hold_tools=True)
    first = attempt(stitcher, None, [start(), text_block(0), text(0, "The river rose"), text(0, " at dawn")])
    second = attempt(
        stitcher,
        "continue",
        [start(), text_block(0), text(0, "at dawn"), text(0, " and fell."), stop(0), *end()],
    )
    assert texts(first + second) == "The river rose at dawn and fell."


def test_held_text_goes_out_when_the_attempt_fails() -> None:
    """Every attempt makes progress: a dropped continue turn still sends what it held, cut."""
    stitcher = Stitcher(hold_tools=True)
    attempt(stitcher, None, [start(), text_block(0), text(0, "One two three")])
    salvaged = attempt(stitcher, "continue", [start(), text_block(0), text(0, "three four")])
    assert texts(salvaged) == " four"
    assert stitcher.transcript.text_blocks() == ["One two three four"]


def test_a_partial_tool_call_never_reaches_sinks() -> None:
    """Tool blocks are held until a non-tool event; a drop discards them and the resume makes them anew."""
    stitcher = Stitcher(hold_tools=True)
    first = attempt(
        stitcher,
        None,
        [start(), text_block(0), text(0, "Let me look."), stop(0), tool_block(1), json_part(1, '{"q": ')],
    )
    assert [row[0] for row in summary(first)][-1] == "content_block_stop"
    second = attempt(
        stitcher,
        "prefill",
        [start(), text_block(0), stop(0), tool_block(1), json_part(1, '{"q": 1}'), stop(1), *end("tool_use")],
    )
    assert summary(second) == [
        ("message_start", None, ""),
        ("content_block_start", 1, ""),
        ("content_block_delta", 1, '{"q": 1}'),
        ("content_block_stop", 1, ""),
        ("message_delta", None, ""),
        ("message_stop", None, ""),
    ]


def test_a_finished_tool_call_waits_for_message_delta() -> None:
    """A complete tool block is only sent once the turn got past it."""
    stitcher = Stitcher(hold_tools=True)
    out = attempt(stitcher, None, [start(), tool_block(0), json_part(0, "{}"), stop(0)])
    assert [row[0] for row in summary(out)] == ["message_start"]
    assert stitcher.transcript.types == []


def test_restart_closes_the_open_block_and_takes_fresh_indices() -> None:
    """A restart cannot be spliced: the interrupted block stops once, the new blocks follow it."""
    stitcher = Stitcher(hold_tools=True)
    attempt(stitcher, None, [start(), text_block(0), text(0, "Partial")])
    second = attempt(stitcher, None, [start(), text_block(0), text(0, "Fresh"), stop(0), *end()])
    assert [row[:2] for row in summary(second)][:4] == [
        ("content_block_stop", 0),
        ("message_start", None),
        ("content_block_start", 1),
        ("content_block_delta", 1),
    ]


def test_a_continuation_without_text_still_closes_the_interrupted_block() -> None:
    """If the continuation's first block is not text, the open block stops before it."""
    stitcher = Stitcher(hold_tools=False)
    attempt(stitcher, None, [start(), text_block(0), text(0, "Checking")])
    second = attempt(
        stitcher, "prefill", [start(), tool_block(0), json_part(0, "{}"), stop(0), *end("tool_use")]
    )
    assert [row[:2] for row in summary(second)][:3] == [
        ("message_start", None),
        ("content_block_stop", 0),
        ("content_block_start", 1),
    ]


def test_whitespace_only_continuation_of_a_closed_block_adds_no_block() -> None:
    """When the interrupted text had stopped, a continuation repeating only its whitespace adds nothing."""
    stitcher = Stitcher(hold_tools=True)
    attempt(stitcher, None, [start(), text_block(0), text(0, "Done.\n"), stop(0)])
    second = attempt(stitcher, "prefill", [start(), text_block(0), text(0, "\n"), stop(0), *end()])
    assert [row[0] for row in summary(second)] == ["message_start", "message_delta", "message_stop"]
