"""The recorded-SSE reader: every fixture parses, the SSE spec's edges hold, malformed input is named."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from anthropic._models import construct_type
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.apps.run.sse_file import RecordedEvent, parse_sse_events, read_sse_events
from pipeline.errors import InputError, SourceError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sse"
RECORDINGS = sorted(FIXTURES.glob("sdk-*.sse"))
MID_STREAM_ERROR = FIXTURES / "written-error-mid-stream.sse"
BASIC = FIXTURES / "sdk-basic_response.sse"


def dumps(recorded: list[RecordedEvent]) -> list[tuple[int, dict[str, object]]]:
    return [(line, event.model_dump(mode="json", warnings=False)) for line, event in recorded]


def named_events(path: Path) -> list[str]:
    """The ``event:`` names of a recording, as the SDK yields them (``ping`` skipped)."""
    lines = path.read_text("utf-8").splitlines()
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    return [name for name in names if name != "ping"]


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda path: path.stem)
def test_every_recording_parses_into_sdk_events(path: Path) -> None:
    """Each recording yields the SDK's own event objects, one per named event, ping skipped."""
    recorded = list(read_sse_events(path))
    assert [event.type for _, event in recorded] == named_events(path)
    for _, event in recorded:
        rebuilt = construct_type(type_=RawMessageStreamEvent, value=event.model_dump(warnings=False))
        assert type(event) is type(rebuilt)


def test_line_numbers_point_at_the_data_lines() -> None:
    """An event's line is the line its data starts on, counted from 1."""
    lines = BASIC.read_text("utf-8").splitlines()
    for line, event in read_sse_events(BASIC):
        assert lines[line - 1].startswith("data:")
        assert f'"type":"{event.type}"' in lines[line - 1]


def test_mid_stream_error_raises_after_the_events_before_it() -> None:
    """An ``error`` event ends the stream with a SourceError labelled by the API's error type."""
    seen: list[str] = []
    with pytest.raises(SourceError, match=r"overloaded_error: Overloaded .*:17\)") as caught:
        seen.extend(event.type for _, event in read_sse_events(MID_STREAM_ERROR))
    assert caught.value.error_type == "overloaded_error"
    assert seen == ["message_start", "content_block_start", "content_block_delta", "content_block_delta"]


def test_error_event_without_json_is_an_api_error() -> None:
    """An error event whose data is not the documented shape still ends the stream, labelled api_error."""
    with pytest.raises(SourceError, match="api_error: upstream broke") as caught:
        list(parse_sse_events("event: error\ndata: upstream broke\n\n"))
    assert caught.value.error_type == "api_error"


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["crlf", "cr", "lf"])
def test_line_endings(newline: str) -> None:
    """CRLF, CR and LF all end lines, with the same events and line numbers."""
    text = BASIC.read_text("utf-8")
    expected = dumps(list(parse_sse_events(text)))
    assert dumps(list(parse_sse_events(text.replace("\n", newline)))) == expected


@given(cuts=st.lists(st.integers(min_value=0, max_value=BASIC.stat().st_size * 2), max_size=30))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    """A body split anywhere, even between the CR and LF of a line end, reads the same."""
    body = BASIC.read_bytes().replace(b"\n", b"\r\n")
    points = sorted({0, len(body), *(cut % (len(body) + 1) for cut in cuts)})
    chunks = [body[start:end] for start, end in itertools.pairwise(points)]
    assert dumps(list(parse_sse_events(chunks))) == dumps(list(parse_sse_events(body)))


def test_fields_comments_and_spaces() -> None:
    """Comments are skipped, one space after the colon is optional, data lines join with a newline."""
    body = (
        ": a comment\n"
        "event:message_stop\n"
        'data:{"type":\n'
        'data: "message_stop"}   \n'
        "id: 7\n"
        "retry: 1000\n"
        "x-vendor: ignored, as the spec says\n"
        "\n"
    )
    [(line, event)] = parse_sse_events(body)
    assert (line, event.type) == (3, "message_stop")


def test_events_without_a_name_or_data_are_skipped_as_the_sdk_does() -> None:
    """The SDK ignores an event with no ``event:`` field, and one with empty data."""
    body = 'data: {"type":"message_stop"}\n\nevent: message_stop\ndata:\n\nevent: ping\ndata: {}\n\n'
    assert list(parse_sse_events(body)) == []


def test_last_event_without_a_blank_line_is_dispatched() -> None:
    """A recording saved without its final blank line still yields its last event."""
    assert BASIC.read_bytes().endswith(b'"message_stop"}')
    assert next(reversed(list(read_sse_events(BASIC)))).event.type == "message_stop"


def test_unknown_event_types_come_through() -> None:
    """An event type newer than the SDK is built loosely, with a readable ``.type`` and its fields."""
    [(_, event)] = parse_sse_events('event: future\ndata: {"type": "some_future_event", "n": 1}\n\n')
    assert event.type == "some_future_event"
    assert event.model_dump(warnings=False)["n"] == 1


def test_byte_order_mark_is_ignored() -> None:
    """A leading BOM, as some editors save, is not part of the first field name."""
    body = '\ufeffevent: message_stop\ndata: {"type":"message_stop"}\n\n'.encode()
    assert [event.type for _, event in parse_sse_events(body)] == ["message_stop"]


MALFORMED = {
    "bad-json": ('data: {"type":"message_stop"', "the data of event 'message_stop' is not JSON"),
    "no-type": ('data: {"kind":"message_stop"}', "not an object with a 'type' string"),
    "not-an-object": ("data: [1, 2]", "not an object with a 'type' string"),
    "bare-text": ("message_stop", "expected 'field: value' or ':comment'"),
    "bare-json": ('{"type": "message_stop"}', "expected 'field: value' or ':comment'"),
}


@pytest.mark.parametrize(("bad_line", "what"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_line_is_named_after_the_events_before_it(bad_line: str, what: str) -> None:
    """Malformed input raises InputError naming the file and line 7, once earlier events are yielded."""
    good = 'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    body = f"{good}: comment\n\nevent: message_stop\n{bad_line}\n\n{good}"
    seen: list[str] = []
    with pytest.raises(InputError, match=rf"^rec\.sse:7: .*{re.escape(what)}") as caught:
        seen.extend(event.type for _, event in parse_sse_events(body, name="rec.sse"))
    assert seen == ["message_start"]
    assert "\n" not in str(caught.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    """Reading a file names it in every error: bad bytes, bad JSON, or no file at all."""
    path = tmp_path / "broken.sse"
    path.write_bytes(b'event: message_stop\ndata: {"type":"message_stop"}\n\nevent: x\ndata: \xff\n\n')
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:5: not UTF-8"):
        list(read_sse_events(path))
    path.write_text('event: message_stop\ndata: {"type":\n\n', "utf-8")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:2: the data of event 'message_stop'"):
        list(read_sse_events(path))
    with pytest.raises(InputError, match="cannot read the recorded stream"):
        list(read_sse_events(tmp_path / "missing.sse"))


def test_future_block_delta_and_stop_reason_types_are_not_refused() -> None:
    """The shape check asks only for what the stages read: tomorrow's type names pass as built."""
    body = "".join(
        f"event: {kind}\ndata: {json.dumps(data)}\n\n"
        for kind, data in [
            ("message_start", {"type": "message_start", "message": {"id": "msg_1", "content": []}}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "hologram"}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "hologram_delta"}},
            ),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tea_break"},
                    "usage": {"output_tokens": 1},
                },
            ),
        ]
    )
    events = [recorded.event for recorded in parse_sse_events(body, name="rec.sse")]
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
    ]
    assert events[1].content_block.type == "hologram"  # type: ignore[union-attr]
    assert events[3].delta.stop_reason == "tea_break"  # type: ignore[union-attr]


@settings(deadline=None)
@given(
    length=st.integers(0, 60),
    limit=st.integers(6, 50),
    ending=st.sampled_from([b"\n", b"\r", b"\r\n"]),
    cuts=st.lists(st.integers(0, 80), max_size=8),
)
def test_line_limit_holds_under_any_chunking(length: int, limit: int, ending: bytes, cuts: list[int]) -> None:
    """A line over ``max_line_bytes`` is refused with its number, however the body is split; others pass."""
    body = b": ok\n:" + b"x" * length + ending + b": next\n"
    points = sorted({0, len(body), *(cut % (len(body) + 1) for cut in cuts)})
    chunks = [body[start:end] for start, end in itertools.pairwise(points)]
    if length + 1 > limit:
        with pytest.raises(InputError, match=rf"^rec:2: line longer than {limit} bytes"):
            list(parse_sse_events(chunks, name="rec", max_line_bytes=limit))
    else:
        assert list(parse_sse_events(chunks, name="rec", max_line_bytes=limit)) == []
