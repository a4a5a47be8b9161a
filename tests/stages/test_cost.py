"""The cost stage: genai-prices on the recorded usage, estimates until the final usage, attempts summed."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from genai_prices import extract_usage

from pipeline.apps.run.sse_file import parse_sse_events, read_sse_events
from pipeline.errors import SourceError
from pipeline.events import AttemptStarted, CostUpdate, Item, Usage
from pipeline.stages import StreamContext
from pipeline.stages.cost import Billable, CostSettings, CostStage, price

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "sse"
PRICED = [
    "sdk-basic_response",
    "sdk-fallback_credit_response",
    "sdk-incomplete_partial_json_response",
    "sdk-stream-a-refusal",
    "sdk-stream-a-toolrefusal",
    "sdk-stream-b-fallback",
    "sdk-tool_use_response",
]


def items(name: str, attempt: int = 1) -> list[Item]:
    """A fixture's events as items of one attempt; an ``error`` event ends the list."""
    out: list[Item] = []
    with contextlib.suppress(SourceError):
        out.extend(
            Item("s1", recorded.event, 0, attempt) for recorded in read_sse_events(FIXTURES / f"{name}.sse")
        )
    return out


def run(stage: CostStage, stream: list[Item]) -> list[CostUpdate]:
    updates: list[CostUpdate] = []
    for item in stream:
        out = list(stage.process(item))
        assert out[0] is item
        updates += [extra.event for extra in out[1:]]
    return updates + [extra.event for extra in stage.finish()]


def new_stage(settings: CostSettings | None = None) -> CostStage:
    return CostStage(StreamContext("s1", "claude-sonnet-4-6", {}, 0), settings)


def direct_usd(name: str) -> float:
    """What genai-prices itself makes of the message the SDK accumulates from the fixture."""
    message = json.loads((FIXTURES / "expected" / f"{name}.json").read_text())
    return float(extract_usage(message, provider_id="anthropic").calc_price().total_price)


def expected_usage(name: str) -> Usage:
    usage = json.loads((FIXTURES / "expected" / f"{name}.json").read_text())["usage"]
    return Usage(
        usage["input_tokens"],
        usage["output_tokens"],
        usage.get("cache_read_input_tokens", 0),
        usage.get("cache_creation_input_tokens", 0),
    )


@pytest.mark.parametrize("name", PRICED)
def test_final_cost_matches_genai_prices_on_the_fixture_usage(name: str) -> None:
    """The last update equals a direct genai-prices computation on the accumulated usage."""
    updates = run(new_stage(), items(name))
    final = updates[-1]
    assert final.usd == pytest.approx(direct_usd(name), rel=1e-12)
    assert final.usage == expected_usage(name)
    assert (final.estimated, final.attempts) == (False, 1)
    assert final.model == json.loads((FIXTURES / "expected" / f"{name}.json").read_text())["model"]


@pytest.mark.parametrize("name", PRICED)
def test_estimated_until_the_final_usage_arrives(name: str) -> None:
    """Every update before ``message_delta`` is flagged estimated; the one it causes is not."""
    stage = new_stage(CostSettings(every_tokens=1))
    flags = []
    for item in items(name):
        flags += [(item.event.type, extra.event.estimated) for extra in list(stage.process(item))[1:]]
    assert flags[0] == ("message_start", True)
    assert flags[-1] == ("message_delta", False)
    assert all(estimated for _, estimated in flags[:-1])


def test_running_estimate_follows_the_streamed_chars() -> None:
    """Before the final usage, output tokens are estimated at four chars a token."""
    stream = items("sdk-stream-b-fallback")
    stage = new_stage(CostSettings(every_tokens=1))
    for item in stream[:-2]:  # up to message_delta, left out
        stage.process(item)
    total = stage.total()
    assert total is not None
    chars = sum(len(item.event.delta.text) for item in stream if item.event.type == "content_block_delta")
    reported = stream[0].event.message.usage.output_tokens
    assert total.usage.output_tokens == reported + math.ceil(chars / 4)
    assert total.estimated
    assert 0 < total.usd < direct_usd("sdk-stream-b-fallback")


def test_estimates_are_sent_at_a_bounded_rate() -> None:
    """3,000 deltas of 12 chars (9,000 estimated tokens) give one update per ~64 tokens, not per delta."""
    updates = run(new_stage(), synthetic("claude-sonnet-4-6", 3000, "x" * 12))
    assert 9000 // (64 + 3) <= len(updates) <= 9000 // 64 + 2


def test_attempts_are_priced_each_and_summed() -> None:
    """A resumed stream costs what its two requests cost, and is final once both reported."""
    first, second = "sdk-tool_use_response", "sdk-stream-b-fallback"
    final = run(new_stage(), items(first, 1) + items(second, 2))[-1]
    assert final.usd == pytest.approx(direct_usd(first) + direct_usd(second), rel=1e-12)
    one, two = expected_usage(first), expected_usage(second)
    assert final.usage == Usage(*(a + b for a, b in zip(_fields(one), _fields(two), strict=True)))
    assert (final.attempts, final.estimated, final.model) == (2, False, "claude-opus-4-8")


def test_an_attempt_that_broke_off_stays_estimated() -> None:
    """A dropped attempt never reports its output, so the total stays an estimate, sent at finish."""
    dropped = items("written-error-mid-stream", 1)
    stage = new_stage(CostSettings(every_tokens=10_000))
    updates = run(stage, dropped + items("sdk-basic_response", 2))
    assert updates[-1].estimated
    assert updates[-1].attempts == 2
    assert updates[-1].usd > direct_usd("sdk-basic_response")
    assert stage.total() == updates[-1]


def test_unknown_model_costs_nan_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A model genai-prices does not know does not crash: nan USD, one warning for many streams."""
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.cost"):
        for _ in range(3):
            final = run(new_stage(), synthetic("claude-unknown-99", 10, "hello"))[-1]
            assert math.isnan(final.usd)
            assert not final.estimated
            assert final.usage.output_tokens == 10
    assert [r.getMessage().count("claude-unknown-99") for r in caplog.records] == [1]


def test_total_is_none_before_message_start() -> None:
    """Nothing is known, so nothing is claimed."""
    assert new_stage().total() is None


def _fields(usage: Usage) -> tuple[int, int, int, int]:
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    )


def synthetic(model: str, deltas: int, text: str) -> list[Item]:
    """A stream of ``deltas`` text deltas of ``text``, whose usage then reports ``deltas`` tokens."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": model}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    frames: list[dict[str, Any]] = [
        {"type": "message_start", "message": message | {"usage": {"input_tokens": 100, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *[delta] * deltas,
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": deltas}},
        {"type": "message_stop"},
    ]
    body = "".join(f"event: {frame['type']}\ndata: {json.dumps(frame)}\n\n" for frame in frames)
    return [Item("s1", recorded.event, 0) for recorded in parse_sse_events(body)]


def test_a_resume_reports_what_it_saved_against_a_restart() -> None:
    """Prefill resume: saved = the first attempt's output priced, less the input paid again for it."""
    broken = items("sdk-stream-b-fallback")[:-3]
    resumed = [
        Item("s1", AttemptStarted(2, "prefill", "overloaded_error"), 0, 2),
        *items("sdk-basic_response", attempt=2),
    ]
    updates = run(new_stage(), broken + resumed)
    alone = new_stage()
    run(alone, broken)
    first_output = alone.total().usage.output_tokens  # type: ignore[union-attr]
    first_input = broken[0].event.message.usage.input_tokens
    second_input = resumed[1].event.message.usage.input_tokens
    model = updates[-1].model
    regenerated = price(model, Billable(0, 0, 0, 0, 0, first_output))
    extra_input = price(model, Billable(max(0, second_input - first_input), 0, 0, 0, 0, 0))
    assert updates[-1].saved_usd == pytest.approx(regenerated - extra_input)
    assert updates[-1].saved_usd > 0
    assert run(new_stage(), broken + items("sdk-basic_response", attempt=2))[-1].saved_usd == 0, (
        "a second attempt that is not a resume saves nothing"
    )
