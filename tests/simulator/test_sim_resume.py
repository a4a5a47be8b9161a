"""Determinism, prefill continuation (4.5 models) and continue turns with overlap (4.6 and later)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import PROMPT, body

from pipeline.apps.simulator import (
    PREFILL_UNSUPPORTED,
    TRAILING_WHITESPACE,
    SimulatorSettings,
    count_tokens,
    reference_text,
)
from pipeline.apps.simulator._plan import MAX_OVERLAP_WORDS, reference_plan
from pipeline.apps.simulator._server import Simulator

FULL_BODY = body(1200, model="claude-haiku-4-5")
FULL = reference_text(FULL_BODY)
NEW_BODY = body(1200, model="claude-opus-4-7")
FULL_NEW = reference_text(NEW_BODY)


def prefill_body(prefix: str, max_tokens: int, model: str = "claude-haiku-4-5") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": prefix}],
    }


def continue_body(partial: str, max_tokens: int, model: str = "claude-opus-4-7") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [
            {"role": "user", "content": PROMPT},
            {"role": "assistant", "content": partial},
            {
                "role": "user",
                "content": "Your previous response was cut off. Continue exactly from where you left off.",
            },
        ],
    }


def test_same_request_same_text_different_prompt_different_text() -> None:
    assert reference_text(FULL_BODY) == FULL
    other = {**FULL_BODY, "messages": [{"role": "user", "content": "Something else entirely"}]}
    assert reference_text(other) != FULL
    assert reference_text(FULL_BODY, SimulatorSettings(seed=1)) != FULL
    assert (
        reference_text({**FULL_BODY, "max_tokens": 300})
        == FULL[: len(reference_text({**FULL_BODY, "max_tokens": 300}))]
    )


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(FULL)))
def test_prefill_continuation_is_the_rest(cut: int) -> None:
    prefix = FULL[:cut].rstrip()
    used = count_tokens(prefix)
    plan = reference_plan(prefill_body(prefix, 1200 - used + 5))
    assert plan.prefix_matched is True
    assert (prefix + plan.text)[: len(FULL)] == FULL
    if (cut < len(FULL) and FULL[cut - 1 : cut].isspace()) or prefix != FULL[:cut]:
        assert plan.text[:1].isspace()


def test_prefill_at_token_boundary_with_exact_budget_joins_exactly() -> None:
    for cut in (1, 57, 300, 640):
        partial = reference_text({**FULL_BODY, "max_tokens": cut}).rstrip()
        rest = reference_text(prefill_body(partial, 1200 - count_tokens(partial)))
        assert partial + rest == FULL


def test_prefill_usage_counts_prefix_as_input_only() -> None:
    partial = FULL[:2000].rstrip()
    plan = reference_plan(prefill_body(partial, 100))
    fresh = reference_plan(FULL_BODY)
    assert plan.input_tokens >= fresh.input_tokens + count_tokens(partial)
    assert plan.output_tokens == 100 == count_tokens(plan.text)


def test_prefill_with_mangled_whitespace_still_matches() -> None:
    partial = FULL[:1500].rstrip()
    mangled = " ".join(partial.split())
    plan = reference_plan(prefill_body(mangled, 50))
    assert plan.prefix_matched is True
    assert FULL[len(partial) :].startswith(plan.text)


def test_unknown_prefix_gets_fresh_prose() -> None:
    plan = reference_plan(prefill_body("Completely unrelated words here", 80))
    assert plan.prefix_matched is False
    assert plan.text.startswith("\n\n")
    assert plan.output_tokens == 80


def test_continue_restates_overlap_then_continues() -> None:
    overlaps = set()
    for cut in range(400, 4000, 97):
        partial = FULL_NEW[:cut].rstrip()
        plan = reference_plan(continue_body(partial, 200))
        assert plan.mode == "continue"
        assert plan.prefix_matched is True
        k = len(plan.overlap_text.split())
        overlaps.add(k)
        assert k <= MAX_OVERLAP_WORDS
        assert plan.text.startswith(plan.overlap_text)
        if plan.overlap_text:
            assert not plan.text[0].isspace()
            assert partial.endswith(plan.overlap_text) or FULL_NEW[len(partial) :][:1].isalnum()
        assert FULL_NEW.startswith(partial + plan.text[len(plan.overlap_text) :])
    assert len(overlaps) > 3  # seeded per cut, from 0 to 12 words


def test_continue_overlap_can_be_forced() -> None:
    from pipeline.apps.simulator._plan import build_plan
    from pipeline.apps.simulator._scenarios import SCENARIOS
    from pipeline.apps.simulator._validation import parse_request

    partial = FULL_NEW[:1000].rstrip()
    request = parse_request(continue_body(partial, 50))
    forced = build_plan(request, SCENARIOS["report"], SimulatorSettings(), overlap_words=3)
    assert len(forced.overlap_text.split()) == 3
    none = build_plan(request, SCENARIOS["report"], SimulatorSettings(), overlap_words=0)
    assert none.overlap_text == ""
    assert partial + none.text == FULL_NEW[: len(partial + none.text)]


@pytest.mark.anyio
async def test_prefill_over_http_joins_exactly(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        first = await c.messages.create(**FULL_BODY)
        full = first.content[0].text  # type: ignore[union-attr]
        assert full == FULL
        for cut in (10, 123, 1001):
            partial = reference_text({**FULL_BODY, "max_tokens": cut}).rstrip()
            async with c.messages.stream(**prefill_body(partial, 1200 - count_tokens(partial))) as s:  # type: ignore[arg-type]
                rest = await s.get_final_message()
            assert partial + rest.content[0].text == full  # type: ignore[union-attr]
            assert rest.usage.output_tokens == count_tokens(rest.content[0].text)  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "model", ["claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7", "claude-opus-4-8"]
)
async def test_new_models_reject_prefill(sim: Simulator, model: str) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        with pytest.raises(anthropic.BadRequestError) as info:
            await c.messages.create(**prefill_body("# A Report", 50, model=model))  # type: ignore[arg-type]
    assert info.value.body["error"]["message"] == PREFILL_UNSUPPORTED  # type: ignore[index]


@pytest.mark.anyio
async def test_prefill_trailing_whitespace_rejected(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        with pytest.raises(anthropic.BadRequestError) as info:
            await c.messages.create(**prefill_body("# A Report\n\n", 50, model="claude-haiku-4-5"))  # type: ignore[arg-type]
    assert info.value.body["error"]["message"] == TRAILING_WHITESPACE  # type: ignore[index]


@pytest.mark.anyio
async def test_continue_turn_over_http(sim: Simulator) -> None:
    original = body(600)
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        full = (await c.messages.create(**original)).content[0].text  # type: ignore[union-attr]
        partial = full[:1234].rstrip()
        reply = await c.messages.create(
            **continue_body(partial, 300), extra_headers={"x-rillet-overlap-words": "5"}
        )
    text = reply.content[0].text  # type: ignore[union-attr]
    truth = sim.truth(sim.requests[-1])
    assert truth["mode"] == "continue"
    assert truth["prefix_matched"]
    overlap = truth["overlap_text"]
    assert len(overlap.split()) == 5
    assert text.startswith(overlap)
    assert full.startswith(partial + text[len(overlap) :][: len(full) - len(partial)])
