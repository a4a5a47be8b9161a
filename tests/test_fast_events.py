"""The fast event parser against the SDK's own stream iterator, on every recorded stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import AsyncAnthropic
from anthropic._models import construct_type
from anthropic.types import RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st

from pipeline.apps.shared.frame_log import StreamLog
from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.events import STREAMED_TEXT_FIELDS, Item, report_text, streamed_text
from pipeline.fast_events import BlockDelta, EventParser, TextDelta, to_sdk
from pipeline.runner import Pipeline
from pipeline.sink import SinkSpec
from sinks.file import FileSink
from tests.conftest import FIXTURES
from tests.test_pipeline import RecordingSink

RECORDINGS = sorted(path.name for path in FIXTURES.glob("*.sse"))
ERROR = "written-error-mid-stream.sse"


class StreamError(Exception):
    def __init__(self, data: str) -> None:
        self.data = data


def body(name: str) -> bytes:
    """A recording as a server sends it: every event ended by its blank line."""
    return (FIXTURES / name).read_bytes().rstrip(b"\r\n") + b"\n\n"


def parse(chunks: list[bytes]) -> tuple[list[Any], str | None]:
    """The events of a body given in chunks, and the data of the error event that ended it, if any."""
    parser = EventParser(StreamError)
    events: list[Any] = []
    try:
        for chunk in chunks:
            events.extend(parser.feed(chunk))
    except StreamError as exc:
        return events, exc.data
    return events, None


async def sdk_events(data: bytes) -> tuple[list[Any], BaseException | None]:
    """What the SDK's own stream iterator yields for the same body, over its own client."""

    def answer(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    events: list[Any] = []
    async with AsyncAnthropic(api_key="test", base_url="http://sdk.invalid", http_client=http) as client:
        stream = await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        try:
            async for event in stream:
                events.append(event)  # noqa: PERF401 (a comprehension would lose those before an error)
        except anthropic.APIStatusError as exc:
            return events, exc
    return events, None


@pytest.mark.anyio
@pytest.mark.parametrize("name", RECORDINGS)
async def test_every_event_is_the_sdks_own_event(name: str) -> None:
    """``to_sdk`` of each event equals what the SDK's iterator yields; the error event ends both."""
    events, error = parse([body(name)])
    expected, sdk_error = await sdk_events(body(name))
    assert [to_sdk(event) for event in events] == expected
    assert [type(to_sdk(event)) for event in events] == [type(event) for event in expected]
    assert (error is None) == (sdk_error is None) == (name != ERROR)
    if sdk_error is not None:
        assert isinstance(sdk_error, anthropic.APIStatusError)
        assert json.loads(error or "") == sdk_error.body


@pytest.mark.parametrize("name", RECORDINGS)
def test_deltas_carry_the_sdk_attributes_and_their_wire_json(name: str) -> None:
    events, _ = parse([body(name)])
    fast = [event for event in events if isinstance(event, BlockDelta)]
    assert fast or name == "sdk-refusal_response.sse"
    for event in fast:
        sdk = event.to_sdk()
        assert (event.type, event.index, event.delta.type) == (sdk.type, sdk.index, sdk.delta.type)
        assert streamed_text(event.delta) == streamed_text(sdk.delta)
        assert report_text(Item("s", event, 0)) == report_text(Item("s", sdk, 0))
        assert json.loads(event.raw) == event.model_dump() == sdk.model_dump(mode="json", exclude_unset=True)
        assert b"\n" not in event.raw


def with_line_ends(data: bytes, end: bytes) -> bytes:
    return data.replace(b"\n", end)


@given(
    name=st.sampled_from(RECORDINGS),
    end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    data=st.data(),
)
def test_any_split_of_the_body_gives_the_same_events(name: str, end: bytes, data: st.DataObject) -> None:
    """However the transport cuts the bytes (inside a CRLF, a UTF-8 character, a line), nothing changes."""
    whole = with_line_ends(body(name), end)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(whole) - 1), max_size=40)))
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    assert parse(chunks) == parse([body(name)])


def test_an_event_without_its_blank_line_is_dropped_at_the_end_as_the_sdk_does() -> None:
    events, _ = parse([b'event: message_stop\ndata: {"type":"message_stop"}\n'])
    assert events == []


def test_unknown_and_unusual_events_are_the_sdks_models() -> None:
    """Unknown types, extra fields and other delta types go through the SDK's construct_type untouched."""
    values = [
        {"type": "brand_new", "extra": {"a": [1]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a", "x": 1}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
    ]
    data = b"".join(b"event: %s\ndata: %s\n\n" % (v["type"].encode(), json.dumps(v).encode()) for v in values)
    events, _ = parse([data])
    assert events == [construct_type(type_=RawMessageStreamEvent, value=value) for value in values]
    assert not any(isinstance(event, BlockDelta) for event in events)


def delta_event(text_json: str) -> bytes:
    """A text delta's SSE event, its text given as JSON source."""
    data = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":' + text_json + "}}"
    return f"event: content_block_delta\ndata: {data}\n\n".encode()


def test_a_lone_surrogate_is_read_as_the_sdk_reads_it() -> None:
    """jiter refuses a lone surrogate escape; the parser still reads it, as json.loads does."""
    data = delta_event('"\\ud83d"')
    (event,), _ = parse([data])
    assert event == BlockDelta(0, TextDelta("\ud83d"), b"")
    assert event.raw == data.split(b"data: ")[1].rstrip()


def test_a_copy_with_another_index_has_json_to_match() -> None:
    (event,), _ = parse([delta_event('"\\ud83d \u00e9"')])
    moved = event.model_copy(update={"index": 3})
    assert moved == BlockDelta(3, TextDelta("\ud83d \u00e9"), b"")
    assert json.loads(moved.raw) == moved.model_dump()
    assert event.index == 0


@pytest.mark.anyio
async def test_the_events_log_writes_a_deltas_wire_json(tmp_path: Path) -> None:
    events, _ = parse([body("sdk-tool_use_response.sse")])
    path = tmp_path / "events.jsonl"
    async with FileSink(path, mode="jsonl") as sink:
        await sink.write([Item("s", event, 0, seq=seq) for seq, event in enumerate(events)])
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()][: len(events)]
    assert [line["event"] for line in lines] == [
        to_sdk(event).model_dump(mode="json", exclude_unset=True) for event in events
    ]


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_browser_log_frames_deltas_as_it_frames_the_sdk_events(name: str) -> None:
    """The log behind ``rillet serve`` and the Redis frames reads a delta's data through ``model_dump``."""
    events, _ = parse([body(name)])
    frames = []
    for convert in (lambda event: event, to_sdk):
        log = StreamLog("s")
        for seq, event in enumerate(events):
            log.add(Item("s", convert(event), 0, seq=seq))
        log.flush()
        frames.append([(f.split(b"\n")[1], json.loads(f.split(b"data: ", 1)[1])) for f in log.frames])
    assert frames[0] == frames[1]
    assert len(frames[0]) > 1


def comparable(event: Any) -> dict[str, Any]:
    """An SDK event as data, without the message id that the simulator draws anew per request."""
    data: dict[str, Any] = event.model_dump(mode="json")
    if event.type == "message_start":
        del data["message"]["id"]
    return data


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", ["report", "thinking", "tool_use"])
async def test_the_pipeline_streams_what_the_sdk_yields(scenario: str) -> None:
    """Over loopback HTTP, the pipeline's API events are the SDK's own events for the same answer."""
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "A report on rivers."}],
        "extra_headers": {"x-rillet-scenario": scenario, "x-rillet-tokens-per-s": "20000"},
    }
    sink = RecordingSink()
    async with open_simulator(SimulatorSettings()) as sim:
        async with make_client(api_key="test", base_url=sim.base_url) as client:
            async with Pipeline(client, stages=[], sinks=[SinkSpec(sink)]) as pipeline:
                result = await pipeline.run(request)
            stream = await client.messages.create(**request, stream=True)
            expected = [event async for event in stream]
    assert result.outcome == "completed"
    events = [item.event for item in sink.items if not item.event.type.startswith("rillet.")]
    assert [comparable(to_sdk(event)) for event in events] == [comparable(event) for event in expected]
    assert [type(to_sdk(event)) for event in events] == [type(event) for event in expected]
    deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type in STREAMED_TEXT_FIELDS]
    assert deltas
    assert all(isinstance(event, BlockDelta) for event in deltas)
