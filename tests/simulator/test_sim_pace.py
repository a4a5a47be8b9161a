"""The simulator looks like Claude without a key: its pace, its token size, a report on the prompt's topic."""

from __future__ import annotations

import math
import statistics

import pytest
from anthropic import AsyncAnthropic
from sim_helpers import body

from pipeline.apps.simulator import PRESETS, SimulatorSettings, count_tokens, open_simulator, reference_text
from pipeline.apps.simulator._text import TOKEN_RE
from pipeline.apps.simulator._topic import title_case, topic_of
from pipeline.stages.cost import CostSettings

pytestmark = pytest.mark.anyio

CANALS = {"role": "user", "content": "A history of canals"}


def test_tokens_average_about_four_characters() -> None:
    """Claude's tokenizer gives about 4 characters a token on English prose; so does the simulator's."""
    text = reference_text(body(12_000))
    tokens = TOKEN_RE.findall(text)
    assert "".join(tokens) == text
    assert len(tokens) == count_tokens(text) == 12_000
    assert 3.5 <= len(text) / len(tokens) <= 4.5
    assert 3.5 <= statistics.mean(map(len, tokens)) <= 4.5


def test_a_cut_at_a_token_boundary_tokenizes_the_same_on_both_sides() -> None:
    """What makes a resume's budget exact: the partial and the rest count as the whole does."""
    text = reference_text(body(2_000))
    tokens = TOKEN_RE.findall(text)
    for cut in (1, 7, 333, 1_000, 1_999):
        head = "".join(tokens[:cut])
        assert count_tokens(head) == cut
        assert count_tokens(text[len(head) :]) == len(tokens) - cut


@pytest.mark.parametrize(
    ("prompt", "topic"),
    [
        ("A history of canals", "the history of canals"),
        (
            "Write a long-form report, about 5,000 words, on how rivers shape the land: erosion, floods.",
            "how rivers shape the land",
        ),
        ("Explain HTTP/2 flow control, please.", "HTTP/2 flow control"),
        ("Go on.", ""),
    ],
)
def test_topic_is_the_prompt_without_the_request(prompt: str, topic: str) -> None:
    assert topic_of(prompt) == topic


def test_report_title_and_opening_take_up_the_prompt() -> None:
    text = reference_text({"model": "claude-sonnet-4-6", "max_tokens": 400, "messages": [CANALS]})
    title, opening = text.split("\n\n")[:2]
    assert title.startswith("# ")
    assert title_case("the history of canals") in title
    assert "the history of canals" in opening


async def test_claude_preset_paces_as_its_settings_say() -> None:
    """TTFT within the preset's jitter of 750 ms, and tokens/s within 10 % of 65, from the
    simulator's own send times (its ground truth)."""
    settings = PRESETS["claude"]
    assert (settings.ttft_ms, settings.tokens_per_s, settings.jitter) == (750.0, 65.0, 0.3)
    async with (
        open_simulator(settings) as sim,
        AsyncAnthropic(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
        client.messages.stream(**body(300)) as stream,
    ):
        deltas = [
            event.delta.text
            async for event in stream
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        ]
        message = await stream.get_final_message()
        truth = sim.truth(sim.requests[-1])
    sent = [e["sent_ns"] for e in truth["events"] if e["type"] == "content_block_delta"]
    assert len(sent) == len(deltas)
    ttft_s = (sent[0] - truth["received_ns"]) / 1e9
    assert 0.5 <= ttft_s <= 1.0
    rate = (message.usage.output_tokens - count_tokens(deltas[0])) / ((sent[-1] - sent[0]) / 1e9)
    assert abs(rate - 65.0) <= 6.5


async def test_a_faster_setting_is_kept_to_as_well() -> None:
    """The pace follows ``tokens_per_s``, not one built-in figure: 400 tokens/s, within 10 %."""
    settings = SimulatorSettings(tokens_per_s=400.0, jitter=0.3, seed=7)
    async with (
        open_simulator(settings) as sim,
        AsyncAnthropic(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        first: list[str] = []
        async with client.messages.stream(**body(1_200)) as stream:
            async for event in stream:
                if not first and event.type == "content_block_delta" and event.delta.type == "text_delta":
                    first.append(event.delta.text)
            message = await stream.get_final_message()
        truth = sim.truth(sim.requests[-1])
    sent = [e["sent_ns"] for e in truth["events"] if e["type"] == "content_block_delta"]
    rate = (message.usage.output_tokens - count_tokens(first[0])) / ((sent[-1] - sent[0]) / 1e9)
    assert abs(rate - 400.0) <= 40.0


def test_the_status_lines_estimate_agrees_with_the_count() -> None:
    """The live token count (the cost stage's, at 4 characters a token) lands within 10 % of what
    the simulator bills: a 400-token report no longer shows as 528."""
    text = reference_text(body(400))
    estimate = math.ceil(len(text) / CostSettings().chars_per_token)
    assert abs(estimate - 400) <= 40
