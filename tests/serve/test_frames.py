"""The SSE log sink: frames that survive any text, the API's events kept as sent, one log read by cursors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import (
    ErrorResponse,
    OverloadedError,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    TextBlock,
    TextDelta,
)
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from pipeline.apps.shared.frame_log import SseLogSink, StreamLog, encode_frame
from pipeline.events import Item, StreamEnded
from tests.serve.sse_parser import SseParser, parse
from tests.sinks.conformance import CHECKS, FIXTURES, Check, recorded_items

TRICKY = [
    "\r",
    "\n",
    "\r\n",
    "\0",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\U0001f680",
    "👩‍👩‍👧",
    "data: x",
    "event: error",
    ":",
    " ",
]

texts = st.lists(st.sampled_from(TRICKY) | st.text(max_size=4), max_size=24).map("".join)


class Ping(BaseModel):
    """An event type the SDK builds loosely, as it does for types it does not know."""

    type: str


def frames_of(log: StreamLog) -> list[dict[str, Any]]:
    """The log's frames as a browser would dispatch them: name, id and decoded data."""
    events = parse(b"".join(log.frames))
    return [{"event": e.type, "id": int(e.last_event_id), "data": json.loads(e.data)} for e in events]


def text_item(stream_id: str, index: int, text: str, attempt: int = 1) -> Item:
    delta = TextDelta(type="text_delta", text=text)
    return Item(
        stream_id, RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta), 0, attempt
    )


def block_start(stream_id: str, index: int, attempt: int = 1) -> Item:
    block = TextBlock(type="text", text="")
    event = RawContentBlockStartEvent(type="content_block_start", index=index, content_block=block)
    return Item(stream_id, event, 0, attempt)


@given(texts, st.data())
def test_frame_round_trips_any_text_in_any_chunks(text: str, data: st.DataObject) -> None:
    """CR, CRLF, NUL, U+2028, emoji and a BOM come back identical, however the bytes are split."""
    payload = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    body = b"retry: 2000\n\n" + encode_frame(7, "content_block_delta", payload) + encode_frame(8, "end", {})
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    parser = SseParser()
    events = []
    for start, stop in zip([0, *cuts], [*cuts, len(body)], strict=True):
        events += parser.feed(body[start:stop])
    assert [(e.type, e.last_event_id) for e in events] == [("content_block_delta", "7"), ("end", "8")]
    assert json.loads(events[0].data) == payload
    assert parser.retry == 2000


@given(st.lists(texts, min_size=1, max_size=12), st.lists(st.integers(1, 5), min_size=1))
def test_log_keeps_every_character_whatever_the_batches(pieces: list[str], sizes: list[int]) -> None:
    """Deltas merged within a batch, never across one: the text the frames carry is the text that came."""
    log = StreamLog("s")
    items = [block_start("s", 0), *(text_item("s", 0, piece) for piece in pieces)]
    position = 0
    for size in sizes * len(items):
        if position >= len(items):
            break
        for item in items[position : position + size]:
            log.add(item)
        log.flush()
        position += size
    frames = frames_of(log)
    assert [frame["id"] for frame in frames] == list(range(1, len(frames) + 1))
    deltas = [frame["data"]["delta"]["text"] for frame in frames if frame["event"] == "content_block_delta"]
    assert "".join(deltas) == "".join(pieces) == log.text()


def test_a_lone_surrogate_survives_as_a_json_escape() -> None:
    """A lone surrogate (an escaped one in the API's JSON) cannot be UTF-8: it travels escaped instead."""
    frame = encode_frame(1, "content_block_delta", {"text": "a\ud800b"})
    assert frame.isascii()
    assert json.loads(parse(frame)[0].data) == {"text": "a\ud800b"}


def recorded_payloads(name: str) -> list[tuple[str, Any]]:
    """The fixture's events as the API sent them, read by the spec parser: pings left out.

    Some recordings lack the blank line after their last event, which a browser would then drop.
    """
    events = parse((FIXTURES / name).read_bytes() + b"\n\n")
    return [(e.type, json.loads(e.data)) for e in events if e.type != "ping"]


FIXTURE_NAMES = sorted(path.name for path in FIXTURES.glob("sdk-*.sse"))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_recorded_events_keep_their_names_and_payloads(name: str) -> None:
    """One item per batch: each API event becomes one frame with its own name and the payload the API sent."""
    log = StreamLog("s1")
    for item in recorded_items(name):
        log.add(item)
        log.flush()
    sdk_frames = [
        (f["event"], f["data"]) for f in frames_of(log) if not f["event"].startswith(("rillet.", "end"))
    ]
    assert sdk_frames == recorded_payloads(name)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_recorded_stream_ends_with_data_and_the_sdk_message(name: str) -> None:
    """``end`` carries data (so a browser sees it); the log's snapshot is the SDK's final message."""
    log = StreamLog("s1")
    for item in recorded_items(name):
        log.add(item)
    log.flush()
    end = frames_of(log)[-1]
    assert end["event"] == "end"
    assert end["data"]["outcome"] == "completed"
    expected = json.loads((FIXTURES / "expected" / Path(name).with_suffix(".json")).read_text())
    assert log.snapshot() == expected
    assert end["data"]["usage"] == expected["usage"]


def test_api_error_is_renamed_and_pings_dropped() -> None:
    """``error`` would fire EventSource's own error handler, so it travels as ``stream_error``."""
    log = StreamLog("s")
    error = ErrorResponse(type="error", error=OverloadedError(type="overloaded_error", message="Overloaded"))
    ping = Ping(type="ping")
    for event in (ping, error):
        log.add(Item("s", event, 0))
    log.flush()
    assert [(f["event"], f["data"]["error"]["type"]) for f in frames_of(log)] == [
        ("stream_error", "overloaded_error")
    ]


def test_a_resumed_attempt_does_not_restart_the_message() -> None:
    """A second ``message_start`` and a block started again under its index travel under rillet names."""
    start = next(
        item for item in recorded_items("sdk-basic_response.sse") if item.event.type == "message_start"
    )
    log = StreamLog("s")
    for item in (
        start,
        block_start("s", 0),
        text_item("s", 0, "Hel"),
        Item("s", start.event, 0, attempt=2),
        block_start("s", 0, attempt=2),
        text_item("s", 0, "lo", attempt=2),
        block_start("s", 1, attempt=2),
    ):
        log.add(item)
        log.flush()
    names = [f["event"] for f in frames_of(log)]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "rillet.message_start",
        "rillet.content_block_start",
        "content_block_delta",
        "content_block_start",
    ]
    assert log.text() == "Hello"


def test_eviction_keeps_the_newest_frames_and_flags_old_cursors() -> None:
    """Past ``max_bytes`` the oldest frames go; a cursor before them learns it must reset."""
    log = StreamLog("s", max_bytes=600)
    log.add(block_start("s", 0))
    for n in range(49):
        log.add(text_item("s", 0, f"chunk {n:02d} "))
        log.flush()
    assert log.size <= 600
    assert log.first_id > 1
    assert log.last_id == 50
    evicted, frames = log.after(0)
    assert evicted
    assert frames == log.frames
    assert log.after(log.first_id - 1) == (False, log.frames)
    assert log.text().endswith("chunk 48 ")
    assert log.text().startswith("chunk 00 ")


@pytest.mark.anyio
async def test_sink_keeps_one_log_per_stream_and_wakes_readers() -> None:
    """Interleaved streams land in their own logs; a write wakes the readers waiting on each."""
    sink = SseLogSink()
    async with sink:
        waiting = sink.open_log("a").changed
        batch: Sequence[Item] = [
            *(block_start(stream, 0) for stream in "ab"),
            *(text_item(stream, 0, text) for stream, text in ("ax", "by", "az")),
        ]
        await sink.write(batch)
        assert waiting.is_set()
        assert sink.logs["a"].text() == "xz"
        assert sink.logs["b"].text() == "y"
        await sink.write([Item("a", StreamEnded("completed", "end_turn"), 0)])
        assert sink.logs["a"].finished
        assert not sink.logs["b"].finished
    assert sink.logs["b"].closed


@pytest.mark.anyio
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
async def test_conformance(check: Check) -> None:
    """The SSE sink meets the sink contract."""
    await check(SseLogSink)
