"""Every scenario through the real SDK over loopback, and its shape against the recorded streams."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
from anthropic import AsyncAnthropic
from sim_helpers import body, collapse, fixture_events, key_paths, parse_sse, raw_stream

from pipeline.apps.simulator import SCENARIO_NAMES, SimulatorSettings, count_tokens, reference_text
from pipeline.apps.simulator._server import Simulator

pytestmark = pytest.mark.anyio


def client(sim: Simulator) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=sim.base_url, api_key="test-key", max_retries=0)


def test_scenario_names_are_a_tuple() -> None:
    assert isinstance(SCENARIO_NAMES, tuple)
    assert {
        "report",
        "tool_use",
        "thinking",
        "loop",
        "drop",
        "overloaded",
        "rate_limited",
        "unavailable",
    } <= set(SCENARIO_NAMES)
    assert "markup" in SCENARIO_NAMES


async def _consume(c: AsyncAnthropic, headers: dict[str, str], seen: list[str]) -> None:
    """Iterate a stream's helper events into ``seen`` (the SDK raises what it raises)."""
    async with c.messages.stream(**body(300), extra_headers=headers) as s:
        async for event in s:
            seen.append(event.type)  # noqa: PERF401 - keep what arrived before the stream raises


async def test_report_final_message(sim: Simulator) -> None:
    async with client(sim) as c, c.messages.stream(**body(400)) as stream:
        message = await stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    assert request_id.startswith("req_")
    assert [b.type for b in message.content] == ["text"]
    text = message.content[0].text
    assert text == reference_text(body(400))
    assert text.startswith("# ")
    assert "\n\n## " in text
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 400 == count_tokens(text)
    assert message.usage.input_tokens > 0
    truth = sim.truth(request_id)
    assert truth["completed"]
    assert not truth["disconnected"]
    assert request_id in sim.requests


async def test_report_reaches_natural_end() -> None:
    from pipeline.apps.simulator import open_simulator

    async with open_simulator(SimulatorSettings(report_tokens=200)) as s, client(s) as c:
        message = await c.messages.create(**body(5000))
    assert message.stop_reason == "end_turn"
    assert 200 <= message.usage.output_tokens < 400


async def test_long_report_has_5000_words(sim: Simulator) -> None:
    """8,000 tokens of about 4 characters: the 5,000 words the default prompt asks for."""
    async with client(sim) as c:
        message = await c.messages.create(**body(8000), extra_headers={"x-rillet-scenario": "report"})
    assert message.content[0].type == "text"
    assert len(message.content[0].text.split()) >= 4800


async def test_tool_use(sim: Simulator) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "weather",
            "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
            },
        }
    ]
    async with (
        client(sim) as c,
        c.messages.stream(**body(300), tools=tools, extra_headers={"x-rillet-scenario": "tool_use"}) as s,
    ):  # type: ignore[arg-type]
        message = await s.get_final_message()
    assert [b.type for b in message.content] == ["text", "tool_use"]
    tool = message.content[1]
    assert tool.type == "tool_use"
    assert tool.name == "get_weather"
    assert set(tool.input) == {"location", "days"}  # type: ignore[arg-type]
    assert message.stop_reason == "tool_use"


async def test_thinking(sim: Simulator) -> None:
    async with (
        client(sim) as c,
        c.messages.stream(**body(400), extra_headers={"x-rillet-scenario": "thinking"}) as s,
    ):
        message = await s.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking
    assert thinking.signature
    assert message.usage.output_tokens == 400


async def test_loop_repeats_a_paragraph(sim: Simulator) -> None:
    async with client(sim) as c:
        message = await c.messages.create(**body(2000), extra_headers={"x-rillet-scenario": "loop"})
    text = message.content[0].text  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    tail = text[-3000:]
    unit = tail[-1000:]
    period = next(p for p in range(100, 900) if unit[-p:] == unit[-2 * p : -p])
    assert 200 <= period <= 700
    assert tail.count(unit[-period:]) >= 3


async def test_markup(sim: Simulator) -> None:
    async with client(sim) as c:
        message = await c.messages.create(**body(600), extra_headers={"x-rillet-scenario": "markup"})
    text = message.content[0].text  # type: ignore[union-attr]
    for needle in (
        "<script>",
        "<img src=x onerror=alert(1)>",
        "\r\n",
        "\r",
        "\u2028",
        "\ufeff",
        "\U0001f680",
    ):
        assert needle in text


async def test_overloaded_mid_stream(sim: Simulator) -> None:
    seen = []
    async with client(sim) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await _consume(c, {"x-rillet-scenario": "overloaded"}, seen)
    assert info.value.type == "overloaded_error"  # type: ignore[attr-defined]
    assert "text" in seen


async def test_overloaded_non_streaming_is_529(sim: Simulator) -> None:
    async with client(sim) as c:
        with pytest.raises(anthropic.InternalServerError) as info:
            await c.messages.create(**body(), extra_headers={"x-rillet-scenario": "overloaded"})
    assert info.value.status_code == 529


async def test_rate_limited(sim: Simulator) -> None:
    async with client(sim) as c:
        with pytest.raises(anthropic.RateLimitError) as info:
            await c.messages.create(**body(), extra_headers={"x-rillet-scenario": "rate_limited"})
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert info.value.request_id
    assert info.value.request_id.startswith("req_")


async def test_unavailable(sim: Simulator) -> None:
    async with client(sim) as c:
        with pytest.raises(anthropic.OverloadedError) as info:
            async with c.messages.stream(**body(), extra_headers={"x-rillet-scenario": "unavailable"}) as s:
                await s.get_final_message()
    assert info.value.status_code == 529


async def test_fail_first_then_success_with_retries() -> None:
    from pipeline.apps.simulator import open_simulator

    async with (
        open_simulator(SimulatorSettings(retry_after_s=0.01)) as s,
        AsyncAnthropic(base_url=s.base_url, api_key="k", max_retries=2) as c,
    ):
        headers = {"x-rillet-scenario": "rate_limited", "x-rillet-fail-first": "2"}
        message = await c.messages.create(**body(50), extra_headers=headers)
        assert message.usage.output_tokens == 50
        assert [s.truth(r)["status"] for r in s.requests] == [429, 429, 200]


async def test_drop_raises_transport_error(sim: Simulator) -> None:
    seen: list[str] = []
    async with client(sim) as c:
        with pytest.raises(httpx2.TransportError):
            await _consume(c, {"x-rillet-scenario": "drop"}, seen)
    assert len(seen) > 5
    truth = sim.truth(sim.requests[-1])
    assert truth["dropped"]
    assert not truth["completed"]
    assert truth["partial_event"] == "content_block_delta"


@pytest.mark.parametrize("scenario", ["report", "tool_use", "thinking", "markup"])
async def test_non_streaming_equals_streaming(sim: Simulator, scenario: str) -> None:
    headers = {"x-rillet-scenario": scenario}
    async with client(sim) as c:
        whole = await c.messages.create(**body(250), extra_headers=headers)
        async with c.messages.stream(**body(250), extra_headers=headers) as s:
            streamed = await s.get_final_message()
    assert whole.model_dump(exclude={"id"}) == streamed.model_dump(exclude={"id"})


# --- wire shape against the recorded streams ---------------------------------------------------


async def test_report_matches_basic_fixture(sim: Simulator) -> None:
    ours = parse_sse(await raw_stream(sim.base_url, body(60)))
    basic = fixture_events("sdk-basic_response.sse")
    assert collapse([n for n, _ in ours]) == collapse([n for n, _ in basic])
    assert all(d["type"] == n for n, d in ours)
    full = dict(fixture_events("sdk-tool_use_response.sse"))  # its message_start has the full usage
    assert key_paths(ours[0][1]) == key_paths(full["message_start"])
    by_name = {n: d for n, d in basic}
    for name in ("content_block_start", "content_block_delta", "content_block_stop", "message_stop", "ping"):
        assert key_paths(dict(ours)[name]) == key_paths(by_name[name]), name
    longer = dict(fixture_events("sdk-stream-b-fallback.sse"))
    assert key_paths(by_name["message_delta"]) <= key_paths(dict(ours)["message_delta"])
    assert key_paths(dict(ours)["message_delta"]) <= key_paths(longer["message_delta"])


async def test_wire_is_compact_json_with_ping_as_recorded(sim: Simulator) -> None:
    raw = await raw_stream(sim.base_url, body(20))
    assert raw.startswith(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_')
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    assert b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":' in raw
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


async def test_tool_use_matches_fixture(sim: Simulator) -> None:
    ours = parse_sse(await raw_stream(sim.base_url, body(300), {"x-rillet-scenario": "tool_use"}))
    fixture = fixture_events("sdk-tool_use_response.sse")
    assert collapse([n for n, _ in ours]) == collapse([n for n, _ in fixture])
    ours_tool = [
        d for n, d in ours if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
    ]
    fx_tool = [
        d for n, d in fixture if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
    ]
    assert key_paths(ours_tool[0]) == key_paths(fx_tool[0])
    json_deltas = [
        d for n, d in ours if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json_deltas[0]["delta"]["partial_json"] == ""
    assert len(json_deltas) >= 3
    fx_json = next(
        d for n, d in fixture if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert key_paths(json_deltas[0]) == key_paths(fx_json)
    json.loads("".join(d["delta"]["partial_json"] for d in json_deltas))
    assert dict(ours)["message_delta"]["delta"]["stop_reason"] == "tool_use"


async def test_thinking_matches_fixture(sim: Simulator) -> None:
    ours = parse_sse(await raw_stream(sim.base_url, body(300), {"x-rillet-scenario": "thinking"}))
    fixture = fixture_events("sdk-stream-a-refusal.sse")

    def thinking_part(events: list[tuple[str, dict[str, object]]]) -> list[tuple[str, dict[str, object]]]:
        return [(n, d) for n, d in events if d.get("index") == 0 or n == "ping"]

    ours_part, fx_part = thinking_part(ours), thinking_part(fixture)
    assert collapse([n for n, _ in ours_part]) == collapse([n for n, _ in fx_part])
    assert [d["delta"]["type"] for n, d in ours_part if n == "content_block_delta"][-2:] == [  # type: ignore[index]
        "thinking_delta",
        "signature_delta",
    ]
    for kind in ("thinking_delta", "signature_delta"):
        mine = next(d for n, d in ours_part if n == "content_block_delta" and d["delta"]["type"] == kind)  # type: ignore[index]
        theirs = next(d for n, d in fx_part if n == "content_block_delta" and d["delta"]["type"] == kind)  # type: ignore[index]
        assert key_paths(mine) == key_paths(theirs)
    assert key_paths(ours_part[0][1]) == key_paths(fx_part[0][1])


async def test_overloaded_matches_written_fixture(sim: Simulator) -> None:
    ours = parse_sse(await raw_stream(sim.base_url, body(300), {"x-rillet-scenario": "overloaded"}))
    fixture = fixture_events("written-error-mid-stream.sse")
    assert ours[-1] == fixture[-1]
    assert collapse([n for n, _ in ours]) == collapse([n for n, _ in fixture])
