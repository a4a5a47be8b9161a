"""The accumulate stage: the SDK's final message from the recorded streams, for far less work."""

from __future__ import annotations

import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from anthropic._models import construct_type
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st

from pipeline.apps.run.sse_file import read_sse_events
from pipeline.errors import SourceError
from pipeline.events import BlockCompleted, Item, MessageAccumulated, ToolInputError
from pipeline.stages import StreamContext
from pipeline.stages.accumulate import AccumulateStage

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sse"
EXPECTED = sorted(path.stem for path in (FIXTURES / "expected").glob("*.json"))
ALL = sorted(path.stem for path in FIXTURES.glob("*.sse"))
GROWING = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
"""Delta types whose string the SDK concatenates, and that string's field."""


@cache
def events_of(name: str) -> tuple[Any, ...]:
    """A fixture's events as the SDK yields them, up to a mid-stream error if it has one."""
    events: list[Any] = []
    try:
        events.extend(event for _, event in read_sse_events(FIXTURES / f"{name}.sse"))
    except SourceError:
        pass
    return tuple(events)


def expected(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "expected" / f"{name}.json").read_text("utf-8"))  # type: ignore[no-any-return]


def event(value: dict[str, Any]) -> Any:
    """An SDK event built the way the SDK builds one from the wire."""
    return construct_type(type_=RawMessageStreamEvent, value=value)


def run(
    events: Any, attempt: int = 1, stage: AccumulateStage | None = None
) -> tuple[AccumulateStage, list[Item]]:
    stage = stage or AccumulateStage(StreamContext("s", "claude-test", {}, 0))
    out = [produced for e in events for produced in stage.process(Item("s", e, 0, attempt))]
    return stage, out


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: strip(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [strip(item) for item in value]
    return value


def sdk_message(events: Any) -> dict[str, Any]:
    """What the SDK's own accumulator makes of the same events, dumped as the expected files are."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for e in events:
        snapshot = accumulate_event(event=e, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    return strip(snapshot.model_dump(mode="json", warnings=False))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", EXPECTED)
def test_snapshot_equals_the_sdk_final_message(name: str) -> None:
    """On every recording, the accumulated message is the SDK's get_final_message(), field for field."""
    stage, _ = run(events_of(name))
    assert stage.snapshot() == expected(name)
    [final] = stage.finish()
    assert final.event == MessageAccumulated(expected(name), complete=True)


@pytest.mark.parametrize("name", ALL)
def test_snapshot_equals_the_sdk_accumulator_on_the_same_events(name: str) -> None:
    """The installed SDK's accumulate_event, fed the same event objects, agrees (broken streams too)."""
    stage, _ = run(events_of(name))
    assert stage.snapshot() == sdk_message(events_of(name))


def test_every_item_passes_through_first_and_unchanged() -> None:
    """Each input item comes out as itself, before anything derived from it."""
    events = events_of("sdk-tool_use_response")
    _, out = run(events)
    assert [item.event for item in out if not item.event.type.startswith("rillet.")] == list(events)
    assert not out[0].event.type.startswith("rillet.")


def test_block_completed_per_block_with_parsed_tool_input() -> None:
    """Every block stop announces the block in its final form, tool input parsed."""
    _, out = run(events_of("sdk-tool_use_response"))
    completed = [
        (index, item.event) for index, item in enumerate(out) if item.event.type == "rillet.block_completed"
    ]
    assert [e for _, e in completed] == [
        BlockCompleted(0, expected("sdk-tool_use_response")["content"][0]),
        BlockCompleted(1, expected("sdk-tool_use_response")["content"][1]),
    ]
    assert completed[1][1].block["input"] == {"location": "Paris"}
    assert all(out[position - 1].event.type == "content_block_stop" for position, _ in completed)


def test_unstopped_tool_block_is_parsed_partially_as_the_sdk_does() -> None:
    """A tool input cut off by max_tokens never stops: the snapshot holds the SDK's partial parse."""
    stage, out = run(events_of("sdk-incomplete_partial_json_response"))
    assert [item.event.index for item in out if item.event.type == "rillet.block_completed"] == [0]
    assert stage.snapshot()["content"][1]["input"]["filename"] == "taxes.txt"


def tool_stream(*fragments: str) -> list[Any]:
    return [
        event({"type": "message_start", "message": message("msg_tool")}),
        block_start(0, type="tool_use", id="toolu_1", name="lookup", input={}),
        *(delta(0, "input_json_delta", fragment) for fragment in fragments),
        event({"type": "content_block_stop", "index": 0}),
    ]


def message(id_: str, **usage: int) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1} | usage,
    }


def delta(index: int, kind: str, value: str) -> Any:
    """A delta of one of the growing kinds, carrying ``value``."""
    return block_delta(index, {"type": kind, GROWING[kind]: value})


def block_delta(index: int, body: dict[str, Any]) -> Any:
    return event({"type": "content_block_delta", "index": index, "delta": body})


def block_start(index: int, **block: Any) -> Any:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def message_delta(stop_reason: str | None, usage: dict[str, Any], **fields: Any) -> Any:
    return event({"type": "message_delta", "delta": {"stop_reason": stop_reason, **fields}, "usage": usage})


def test_invalid_tool_json_is_reported_not_raised() -> None:
    """Invalid tool JSON at the block's stop yields a ToolInputError with the raw text; the block survives."""
    stage, out = run(tool_stream('{"city": ', '"Paris",, }'))
    kinds = [item.event.type for item in out]
    assert kinds[-3:] == ["content_block_stop", "rillet.tool_input_error", "rillet.block_completed"]
    error = out[-2].event
    assert isinstance(error, ToolInputError)
    assert (error.index, error.raw_json) == (0, '{"city": "Paris",, }')
    assert error.message.startswith("the input of tool block 0 ('lookup') is not valid JSON: ")
    assert out[-1].event.block["input"] == {}
    assert stage.snapshot()["content"][0]["input"] == {}


def test_truncated_tool_json_at_stop_is_reported_and_kept_partially() -> None:
    """A stopped block whose input JSON is cut short is an error, and keeps what the SDK would show."""
    stage, out = run(tool_stream('{"city": "Paris", "days": [1, 2'))
    assert isinstance(out[-2].event, ToolInputError)
    assert out[-1].event.block["input"] == {"city": "Paris", "days": [1, 2]}
    assert stage.snapshot() == sdk_message(tool_stream('{"city": "Paris", "days": [1, 2'))


def test_tool_input_nulls_are_kept() -> None:
    """A tool input's nulls are the model's data, unlike the None-valued keys of the message."""
    _, out = run(tool_stream('{"city": null}'))
    assert out[-1].event.block["input"] == {"city": None}


def test_tool_block_without_input_deltas_keeps_its_start_input() -> None:
    """Empty input_json deltas leave the content_block_start input, as in the SDK."""
    stage, _ = run(tool_stream("", ""))
    assert stage.snapshot()["content"][0]["input"] == {}


def test_signature_and_citations_follow_the_sdk() -> None:
    """A signature replaces, citations append, and both only on their own block types."""
    citation = {
        "type": "char_location",
        "cited_text": "x",
        "document_index": 0,
        "document_title": None,
        "start_char_index": 0,
        "end_char_index": 1,
    }
    events = [
        event({"type": "message_start", "message": message("msg_cite")}),
        block_start(0, type="thinking", thinking="", signature=""),
        block_delta(0, {"type": "signature_delta", "signature": "a"}),
        block_delta(0, {"type": "signature_delta", "signature": "b"}),
        block_delta(0, {"type": "citations_delta", "citation": citation}),
        block_start(1, type="text", text="", citations=None),
        block_delta(1, {"type": "citations_delta", "citation": citation}),
        block_delta(1, {"type": "citations_delta", "citation": citation}),
        block_delta(1, {"type": "signature_delta", "signature": "c"}),
        message_delta("end_turn", {"output_tokens": 3}),
        event({"type": "message_stop"}),
    ]
    stage, _ = run(events)
    assert stage.snapshot() == sdk_message(events)
    assert stage.snapshot()["content"][0]["signature"] == "b"
    assert len(stage.snapshot()["content"][1]["citations"]) == 2


def test_message_delta_container_and_optional_usage() -> None:
    """container is set only when given; optional usage fields overwrite only when present."""
    events = [
        event({"type": "message_start", "message": message("msg_u", cache_read_input_tokens=5)}),
        message_delta(
            "pause_turn",
            {"output_tokens": 7, "server_tool_use": {"web_search_requests": 2}},
            container={"id": "c1", "expires_at": "2026-01-01T00:00:00Z"},
        ),
        message_delta("end_turn", {"output_tokens": 9}),
    ]
    stage, _ = run(events)
    assert stage.snapshot() == sdk_message(events)
    assert stage.snapshot()["container"]["id"] == "c1"
    assert stage.snapshot()["usage"]["cache_read_input_tokens"] == 5


def rechunk(events: tuple[Any, ...], draw: Any) -> list[Any]:
    """The same stream with each run of string deltas of one block re-split at arbitrary points."""
    runs: list[Any] = []
    for e in events:
        if e.type == "content_block_delta" and e.delta.type in GROWING:
            piece = getattr(e.delta, GROWING[e.delta.type])
            if runs and isinstance(runs[-1], list) and runs[-1][:2] == [e.index, e.delta.type]:
                runs[-1][2] += piece
            else:
                runs.append([e.index, e.delta.type, piece])
        else:
            runs.append(e)
    out: list[Any] = []
    for part in runs:
        if not isinstance(part, list):
            out.append(part)
            continue
        index, kind, text = part
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
        bounds = [0, *cuts, len(text)]
        out.extend(delta(index, kind, text[start:end]) for start, end in itertools.pairwise(bounds))
    return out


@given(name=st.sampled_from(EXPECTED), data=st.data())
def test_any_rechunking_of_the_deltas_accumulates_the_same(name: str, data: st.DataObject) -> None:
    """Splitting or merging text, thinking and tool-input deltas anywhere changes nothing in the result."""
    stage, out = run(rechunk(events_of(name), data.draw))
    assert stage.snapshot() == expected(name)
    assert not any(item.event.type == "rillet.tool_input_error" for item in out)


def test_unknown_event_and_delta_types_pass_through_untouched() -> None:
    """A future event type, and a future delta type on a known block, pass through and change nothing."""
    base = list(events_of("sdk-basic_response"))
    future_event = event({"type": "some_future_event", "payload": {"n": 1}})
    future_delta = block_delta(0, {"type": "future_delta", "text": "!!"})
    stream = [*base[:3], future_event, future_delta, *base[3:]]
    stage, out = run(stream)
    assert [item.event for item in out if not item.event.type.startswith("rillet.")] == stream
    assert out[3].event is future_event
    assert out[4].event is future_delta
    assert stage.snapshot() == expected("sdk-basic_response")


def test_unknown_block_types_keep_their_start_fields() -> None:
    """compaction and fallback blocks stay in the message with what content_block_start gave."""
    stage, _ = run(events_of("sdk-fallback_response"))
    assert stage.snapshot()["content"][0]["to"] == {"model": "claude-sonnet-4-5"}


def test_resumed_attempt_keeps_content_and_sums_usage() -> None:
    """A second message_start from a resumed attempt carries on the message; usage sums over attempts."""
    first = [
        event({"type": "message_start", "message": message("msg_one", cache_read_input_tokens=3)}),
        block_start(0, type="text", text=""),
        delta(0, "text_delta", "Hello"),
    ]
    second = [
        event({"type": "message_start", "message": message("msg_two", input_tokens=15)}),
        block_start(1, type="text", text=""),
        delta(1, "text_delta", " world"),
        event({"type": "content_block_stop", "index": 1}),
        message_delta("end_turn", {"output_tokens": 20}),
        event({"type": "message_stop"}),
    ]
    stage, _ = run(first)
    assert stage.snapshot()["usage"] == {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 3}
    run(second, attempt=2, stage=stage)
    snapshot = stage.snapshot()
    assert snapshot["id"] == "msg_one"
    assert [block["text"] for block in snapshot["content"]] == ["Hello", " world"]
    assert snapshot["usage"] == {"input_tokens": 25, "output_tokens": 21, "cache_read_input_tokens": 3}
    assert stage.text() == "Hello world"
    [final] = stage.finish()
    assert final.event.complete


def test_resumed_attempt_can_continue_the_open_block() -> None:
    """A continuation that restarts the block it resumes, same index and type, appends to it."""
    first = [
        event({"type": "message_start", "message": message("msg_one")}),
        block_start(0, type="text", text=""),
        delta(0, "text_delta", "The river"),
    ]
    second = [
        event({"type": "message_start", "message": message("msg_two")}),
        block_start(0, type="text", text=""),
        delta(0, "text_delta", " bends"),
        event({"type": "content_block_stop", "index": 0}),
    ]
    stage, _ = run(first)
    _, out = run(second, attempt=2, stage=stage)
    assert stage.snapshot()["content"] == [{"type": "text", "text": "The river bends"}]
    assert out[-1].event == BlockCompleted(0, {"type": "text", "text": "The river bends"})


def test_live_text_and_snapshot_mid_stream() -> None:
    """text() and snapshot() answer at any point; a stream cut before message_stop is not complete."""
    events = events_of("written-error-mid-stream")
    stage, _ = run(events[:3])
    assert stage.text() == "The first section of the report"
    run(events[3:], stage=stage)
    assert stage.text() == "The first section of the report describes the river"
    assert stage.snapshot()["content"] == [{"type": "text", "text": stage.text()}]
    [final] = stage.finish()
    assert final.event.complete is False


def test_nothing_before_message_start() -> None:
    """Before any message_start the snapshot is empty, stray events pass, and finish emits nothing."""
    stray = delta(0, "text_delta", "x")
    stage, out = run([stray, message_delta(None, {"output_tokens": 1})])
    assert out[0].event is stray
    assert (stage.snapshot(), stage.text(), tuple(stage.finish())) == ({}, "", ())
