"""The latency stage: first-of-kind moments, gaps, TPOT and E2E from the items' receive stamps."""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic

from pipeline.apps.run.sse_file import read_sse_events
from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.errors import SourceError
from pipeline.events import AttemptStarted, FirstToken, Item, LatencySummary, ResponseHeaders
from pipeline.stages import StreamContext
from pipeline.stages.latency import LatencyStage

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "sse"
START = 1_000_000_000
MS = 1_000_000


def items(name: str, attempt: int = 1, first_ms: int = 1) -> list[Item]:
    """A fixture's events one millisecond apart, the first ``first_ms`` after the start."""
    events = []
    with contextlib.suppress(SourceError):
        events.extend(event for _, event in read_sse_events(FIXTURES / f"{name}.sse"))
    return [Item("s1", event, START + (first_ms + i) * MS, attempt) for i, event in enumerate(events)]


def run(stream: list[Item]) -> tuple[list[FirstToken], LatencySummary]:
    stage = LatencyStage(StreamContext("s1", "claude-sonnet-4-6", {}, START))
    firsts: list[FirstToken] = []
    for item in stream:
        out = list(stage.process(item))
        assert out[0] is item
        firsts += [extra.event for extra in out[1:]]
    (summary,) = [extra.event for extra in stage.finish()]
    return firsts, summary


def position(stream: list[Item], kind: str, delta: str | None = None) -> float:
    """Seconds to the first item of ``kind`` (and delta type) carrying content."""
    for item in stream:
        event = item.event
        if event.type == kind and (delta is None or (event.delta.type == delta and event.delta.text != "")):
            return (item.received_ns - START) / 1e9
    raise AssertionError(kind)


def test_first_of_kind_moments_of_a_text_stream() -> None:
    """message_start, first delta and first text each get a FirstToken, once, at their receive time."""
    stream = items("sdk-basic_response")
    firsts, summary = run(stream)
    start, delta = position(stream, "message_start"), position(stream, "content_block_delta")
    assert [(f.kind, f.seconds) for f in firsts] == [
        ("message_start", start),
        ("delta", delta),
        ("text", delta),
    ]
    assert (summary.to_message_start, summary.to_first_delta, summary.to_first_text) == (start, delta, delta)
    assert summary.to_first_thinking is None
    assert summary.to_headers is None


def test_thinking_comes_first_and_empty_deltas_are_not_tokens() -> None:
    """Thinking delays the first text; an empty thinking delta neither counts nor makes a gap."""
    stream = items("sdk-stream-a-refusal")
    firsts, summary = run(stream)
    assert [f.kind for f in firsts] == ["message_start", "delta", "thinking", "text"]
    assert summary.to_first_delta == summary.to_first_thinking
    assert summary.to_first_text is not None
    assert summary.to_first_delta is not None
    assert summary.to_first_text > summary.to_first_delta
    deltas = [i for i in stream if i.event.type == "content_block_delta"]
    empty = [i for i in deltas if getattr(i.event.delta, "thinking", None) == ""]
    assert len(empty) == 1
    assert len(summary.gaps) == len(deltas) - len(empty) - 1


def test_a_stream_without_content_has_no_ttft() -> None:
    """A refusal with no delta: message_start is timed, TTFT is None, not zero."""
    _, summary = run(items("sdk-refusal_response"))
    assert summary.to_message_start is not None
    assert (summary.to_first_delta, summary.time_per_output_token, tuple(summary.gaps)) == (None, None, ())


def test_headers_gaps_tpot_and_end_to_end() -> None:
    """TPOT is (E2E − TTFT) / (output_tokens − 1), output tokens from the API's usage."""
    stream = [
        Item("s1", ResponseHeaders(1, "req_1", 200), START + 2 * MS),
        *items("sdk-stream-b-fallback", first_ms=5),
    ]
    _, summary = run(stream)
    assert summary.to_headers == pytest.approx(0.002)
    assert summary.end_to_end == (stream[-1].received_ns - START) / 1e9
    assert summary.output_tokens == 547
    assert summary.to_first_delta is not None
    assert summary.time_per_output_token == pytest.approx((summary.end_to_end - summary.to_first_delta) / 546)
    deltas = [i.received_ns for i in stream if i.event.type == "content_block_delta"]
    assert summary.gaps == pytest.approx([(b - a) / 1e9 for a, b in itertools.pairwise(deltas)])


def test_the_clock_starts_when_the_request_reached_the_transport() -> None:
    """The SDK's request building (AttemptStarted → the send) is client time, kept out of every figure."""
    stream = [
        Item("s1", AttemptStarted(1, "initial", "start"), START),
        Item("s1", ResponseHeaders(1, "req_1", 200, sent_ns=START + MS), START + 3 * MS),
        *items("sdk-basic_response", first_ms=5),
    ]
    _, summary = run(stream)
    assert summary.to_headers == pytest.approx(0.002)
    assert summary.to_first_delta == pytest.approx(position(stream, "content_block_delta") - 0.001)
    assert summary.end_to_end == pytest.approx((stream[-1].received_ns - START - MS) / 1e9)


def test_without_a_hand_off_stamp_the_clock_starts_at_the_attempt() -> None:
    """A client that does not stamp the send: the zero is AttemptStarted, just before the SDK call."""
    stream = [
        Item("s1", AttemptStarted(1, "initial", "start"), START + MS),
        Item("s1", ResponseHeaders(1, "req_1", 200), START + 3 * MS),
        *items("sdk-basic_response", first_ms=5),
    ]
    _, summary = run(stream)
    assert summary.to_headers == pytest.approx(0.002)
    assert summary.to_first_delta == pytest.approx(position(stream, "content_block_delta") - 0.001)


def test_end_to_end_of_a_stream_that_broke_off_is_its_last_item() -> None:
    """No message_stop: E2E runs to the last item received."""
    stream = items("written-error-mid-stream")
    _, summary = run(stream)
    assert summary.end_to_end == (stream[-1].received_ns - START) / 1e9
    assert summary.output_tokens == 0
    assert summary.time_per_output_token is None


def test_a_resumed_stream_keeps_the_first_attempts_ttft_and_drops_the_reconnect_gap() -> None:
    """Attempt 2 adds no FirstToken, no gap across the reconnect, and no TPOT (its E2E holds the wait)."""
    first = items("written-error-mid-stream", attempt=1)
    second = items("sdk-basic_response", attempt=2, first_ms=500)
    firsts, summary = run(first + second)
    assert [f.kind for f in firsts] == ["message_start", "delta", "text"]
    assert summary.to_first_delta == position(first, "content_block_delta")
    deltas = [i for i in first + second if i.event.type == "content_block_delta"]
    assert len(summary.gaps) == len(deltas) - 2
    assert max(summary.gaps) < 0.1
    assert summary.output_tokens == 6
    assert summary.time_per_output_token is None


def test_a_retry_before_any_content_leaves_ttft_unmeasured() -> None:
    """TTFT is the first attempt's: a retried stream reports None rather than hide the retry in it."""
    failed = [Item("s1", ResponseHeaders(1, "req_1", 200), START + MS, 1)]
    _, summary = run(failed + items("sdk-basic_response", attempt=2, first_ms=800))
    assert summary.to_headers == pytest.approx(0.001)
    assert (summary.to_message_start, summary.to_first_delta, summary.to_first_text) == (None, None, None)
    assert summary.end_to_end > 0.8


@pytest.mark.anyio
async def test_timings_through_the_real_sdk_against_the_simulator() -> None:
    """With a 50 ms TTFT and 2,000 tokens/s, the measured TTFT and TPOT land near them."""
    settings = SimulatorSettings(scenario="report", ttft_ms=50, tokens_per_s=2000, report_tokens=400)
    async with (
        open_simulator(settings) as sim,
        AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0) as client,
    ):
        stage = LatencyStage(StreamContext("s1", "claude-sonnet-4-6", {}, time.perf_counter_ns()))
        stream = await client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=1000,
            messages=[{"role": "user", "content": "Write a short report."}],
            stream=True,
        )
        async with stream:
            async for event in stream:
                stage.process(Item("s1", event, time.perf_counter_ns()))
    (item,) = stage.finish()
    summary = item.event
    assert isinstance(summary, LatencySummary)
    assert summary.to_first_delta is not None
    assert 0.05 <= summary.to_first_delta < 1.0
    assert summary.time_per_output_token is not None
    assert 0.0004 <= summary.time_per_output_token < 0.002
    assert len(summary.gaps) > 10
