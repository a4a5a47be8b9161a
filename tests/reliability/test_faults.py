"""Fault injection against the simulator, through the real SDK over loopback, stages and a file sink.

Every run must end completed with the uninterrupted text exactly (accumulated message and file
sink alike), whatever was cut where, and the cost must count each attempt's input while the
output of a resumed text is paid only once.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import anyio
import pytest
from anthropic import AsyncAnthropic
from fault_harness import MODELS, Case, ListSink, Run, billed, misaligned, run_case

from pipeline.apps.simulator import Simulator, count_tokens, reference_plan
from pipeline.apps.simulator._events import iter_events
from pipeline.events import AttemptStarted, Item, ToolInputError
from pipeline.fanout import FanOut
from pipeline.runner import StreamRun
from pipeline.sink import SinkSpec
from pipeline.source.resume import PrefillSupport, ResumeSettings
from pipeline.source.stream import Source

PREFILL_MODEL, NO_PREFILL_MODEL = MODELS


def assert_exact(run: Run) -> None:
    """The run completed, and its text is the reference's, in the message and in the file."""
    assert run.result.outcome == "completed", run.result.error
    reference = run.case.reference()["text"]
    assert misaligned(reference, run.text) == (0, 0)
    assert run.file_text == reference


def first_attempt_text(items: list[Item]) -> str:
    return "".join(
        item.event.delta.text
        for item in items
        if item.attempt == 1
        and item.event.type == "content_block_delta"
        and item.event.delta.type == "text_delta"
    )


async def sweep(client: AsyncAnthropic, cases: list[Case], tmp: Path) -> list[Run]:
    runs: list[Run] = []
    limiter = anyio.CapacityLimiter(16)

    async def one(seed: int, case: Case) -> None:
        async with limiter:
            runs.append(await run_case(client, case, tmp, seed=seed))

    async with anyio.create_task_group() as tg:
        for seed, case in enumerate(cases):
            tg.start_soon(one, seed, case)
    return runs


def drops(model: str, count: int, seed: int) -> list[Case]:
    """Drops at seeded offsets over the whole stream (0: before message_start; large: at message_stop)."""
    rng = random.Random(f"{model}:{seed}")
    return [
        Case(
            model,
            f"Write a short report on canal {rng.randrange(10**6)}.",
            drop_after=rng.randrange(0, 100),
            fail_first=1,
        )
        for _ in range(count)
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("model", MODELS)
async def test_drops_at_seeded_offsets(client: AsyncAnthropic, model: str, tmp_path: Path) -> None:
    """40 drops per model at seeded offsets: every run ends with the exact text."""
    for run in await sweep(client, drops(model, 40, seed=1), tmp_path):
        assert_exact(run)


@pytest.mark.anyio
@pytest.mark.parametrize("model", MODELS)
async def test_two_hundred_offsets(client: AsyncAnthropic, model: str, tmp_path: Path) -> None:
    """The issue's sweep: 200 more seeded offsets per model, some right after a whitespace delta."""
    runs = await sweep(client, drops(model, 200, seed=2), tmp_path)
    for run in runs:
        assert_exact(run)
    cut_after_whitespace = [run for run in runs if sent_before_drop(run.case).endswith(("\n", " "))]
    assert len(cut_after_whitespace) >= 5, "the sweep must cover drops right after a whitespace delta"


def sent_before_drop(case: Case) -> str:
    """The text of the last complete event the simulator sent before cutting ``case``'s stream."""
    assert case.drop_after is not None
    if case.drop_after == 0:
        return ""
    events = iter_events(reference_plan(case.body()), "msg", case.model)
    _, wire, _, _ = next(itertools.islice(events, case.drop_after - 1, None), ("", b"", 0, False))
    data = json.loads(wire.partition(b"data: ")[2] or b"{}")
    return str(data.get("delta", {}).get("text", ""))


@pytest.mark.anyio
@pytest.mark.parametrize("model", MODELS)
async def test_cost_counts_input_per_attempt_and_output_once(
    sim: Simulator, client: AsyncAnthropic, model: str, tmp_path: Path
) -> None:
    """Each attempt's input is billed; the resume generates only the text not yet received."""
    run = await run_case(client, Case(model, "Write a short report on mills.", drop_after=40), tmp_path)
    assert_exact(run)
    assert [a.strategy for a in run.attempts] == [
        "initial",
        "prefill" if model == PREFILL_MODEL else "continue",
    ]
    input_tokens, outputs = billed(sim, run)
    assert run.result.cost is not None
    assert run.result.cost.attempts == 2
    assert run.result.cost.usage.input_tokens == input_tokens
    assert (run.result.message or {})["usage"]["input_tokens"] == input_tokens
    before = first_attempt_text(run.items)
    reference = run.case.reference()["text"]
    restated = sim.truth(run.request_ids[-1])["overlap_text"]
    assert outputs[-1] == count_tokens(restated + reference[len(before.rstrip()) :])
    assert outputs[-1] < outputs[0]


@pytest.mark.anyio
@pytest.mark.parametrize("model", MODELS)
async def test_drop_inside_tool_use(client: AsyncAnthropic, model: str, tmp_path: Path) -> None:
    """A drop anywhere in a tool_use stream: one whole tool call, no partial one ever seen."""
    for drop_after in range(0, 24):
        case = Case(
            model, "Look up the river gauges.", scenario="tool_use", drop_after=drop_after, fail_first=1
        )
        run = await run_case(client, case, tmp_path, seed=drop_after)
        assert_exact(run)
        tools = [block for block in run.content if block["type"] == "tool_use"]
        assert [tool["input"] for tool in tools] == [json.loads(case.reference()["tools"][0])]
        starts = [
            i
            for i in run.items
            if i.event.type == "content_block_start" and i.event.content_block.type == "tool_use"
        ]
        assert len(starts) == 1
        assert not [i for i in run.items if isinstance(i.event, ToolInputError)]


@pytest.mark.anyio
@pytest.mark.parametrize("model", MODELS)
async def test_overloaded_error_mid_stream(client: AsyncAnthropic, model: str, tmp_path: Path) -> None:
    """An in-stream overloaded_error (an APIStatusError with status 200) is resumed."""
    run = await run_case(
        client, Case(model, "Report on ports.", scenario="overloaded", drop_after=30), tmp_path
    )
    assert_exact(run)
    assert [(a.strategy, a.reason) for a in run.attempts][1][1] == "overloaded_error"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scenario", "reason"), [("rate_limited", "rate_limit_error"), ("unavailable", "overloaded_error")]
)
async def test_429_and_529_are_retried(
    sim: Simulator, client: AsyncAnthropic, scenario: str, reason: str, tmp_path: Path
) -> None:
    """429 and 529 before the stream are retried with the same request; only the answer is billed."""
    run = await run_case(
        client, Case(PREFILL_MODEL, "Report on mills.", scenario=scenario, fail_first=2), tmp_path
    )
    assert_exact(run)
    assert [(a.strategy, a.reason) for a in run.attempts] == [
        ("initial", "start"),
        ("retry", reason),
        ("retry", reason),
    ]
    assert run.result.attempts == 3
    input_tokens, _ = billed(sim, run)
    assert run.result.cost is not None
    assert run.result.cost.usage.input_tokens == input_tokens


@pytest.mark.anyio
async def test_prefill_rejection_switches_to_continue_once(client: AsyncAnthropic, tmp_path: Path) -> None:
    """The API's 400 for prefill makes this resume, and the next one, use continue."""
    support = PrefillSupport(guess=False)
    case = Case(NO_PREFILL_MODEL, "Report on weirs.", drop_after=30)
    first = await run_case(client, case, tmp_path, support=support, seed=1)
    assert_exact(first)
    assert [(a.strategy, a.reason) for a in first.attempts] == [
        ("initial", "start"),
        ("prefill", "connection_error"),
        ("continue", "prefill_unsupported"),
    ]
    second = await run_case(client, case, tmp_path, support=support, seed=2)
    assert [a.strategy for a in second.attempts] == ["initial", "continue"]


@pytest.mark.anyio
async def test_drop_after_message_delta_is_not_resumed(client: AsyncAnthropic, tmp_path: Path) -> None:
    """A stop_reason was received: the message is complete, message_stop is supplied, no resume."""
    run = await run_case(client, Case(PREFILL_MODEL, "Report on docks.", drop_after=10_000), tmp_path)
    assert_exact(run)
    assert len(run.attempts) == 1
    assert run.items[-3].event.type == "message_stop" or any(
        i.event.type == "message_stop" for i in run.items
    )


@pytest.mark.anyio
async def test_too_many_drops_end_in_a_source_error_keeping_the_partial(
    client: AsyncAnthropic, tmp_path: Path
) -> None:
    """Drops on every attempt exhaust the attempts: a one-line error, the partial text and its cost kept."""
    case = Case(
        NO_PREFILL_MODEL, "Report on sluices.", drop_after=12, drop_continuations=True, max_attempts=3
    )
    run = await run_case(client, case, tmp_path)
    assert run.result.outcome == "error"
    assert run.result.error_type == "connection_error"
    assert "gave up after 3 attempts" in (run.result.error or "")
    assert "\n" not in (run.result.error or "")
    assert run.text
    assert case.reference()["text"].startswith(run.text)
    assert run.result.cost is not None
    assert run.result.cost.attempts == 3


@pytest.mark.anyio
async def test_other_4xx_fail_at_once(client: AsyncAnthropic, tmp_path: Path) -> None:
    """A 400 is not retried: one attempt, one line naming the API's message."""
    case = Case("claude-haiku-4-5", "")
    run = await run_case(client, case, tmp_path)
    assert run.result.outcome == "error"
    assert run.result.attempts == 1
    assert (run.result.error or "").startswith("400 invalid_request_error")


@pytest.mark.anyio
async def test_a_stall_is_detected_and_retried(client: AsyncAnthropic, tmp_path: Path) -> None:
    """No event within idle_timeout counts as a drop; every attempt here stalls, so the run fails fast."""
    request = {**Case(PREFILL_MODEL, "Report on locks.").request()}
    request["extra_headers"] = {**request["extra_headers"], "x-rillet-ttft-ms": "5000"}
    source_settings = ResumeSettings(wait=False, idle_timeout=0.2, max_attempts=2)
    run = StreamRun(request, (), "stall")
    source = Source(client, request, run.stream_id, resume=source_settings, prefill_support=PrefillSupport())
    collected = ListSink()
    with anyio.fail_after(5):
        async with FanOut([SinkSpec(collected)]) as fanout:
            result = await run.run(source, fanout)
    reasons = [item.event.reason for item in collected.items if isinstance(item.event, AttemptStarted)]
    assert reasons == ["start", "stall"]
    assert (result.outcome, result.error_type) == ("error", "stall")


@pytest.mark.anyio
async def test_a_drop_inside_thinking_fails_by_default(client: AsyncAnthropic, tmp_path: Path) -> None:
    """A thinking block cannot be sent back partial: with on_thinking='fail' the run says so."""
    case = Case(PREFILL_MODEL, "Think, then report.", scenario="thinking", drop_after=6, fail_first=1)
    run = await run_case(client, case, tmp_path)
    assert run.result.outcome == "error"
    assert "on_thinking = 'restart'" in (run.result.error or "")


@pytest.mark.anyio
async def test_a_drop_inside_thinking_restarts_when_asked(client: AsyncAnthropic, tmp_path: Path) -> None:
    """on_thinking='restart': the partial content is void; the message and the file hold the fresh answer."""
    case = Case(
        PREFILL_MODEL,
        "Think, then report.",
        scenario="thinking",
        drop_after=6,
        fail_first=1,
        on_thinking="restart",
    )
    run = await run_case(client, case, tmp_path)
    assert_exact(run)
    assert [a.strategy for a in run.attempts] == ["initial", "restart"]
    assert [block["type"] for block in run.content] == ["thinking", "text"]
    assert run.file_text == run.content[1]["text"]
