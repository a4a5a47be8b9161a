"""A resumed report ends where the uninterrupted one does, even when ``max_tokens`` ends it.

The resume's budget is the original less the tokens of the text so far, counted by the API
(``POST /v1/messages/count_tokens``): an estimate from the length leaves a continuation of a late
drop a few tokens short or long of the uninterrupted report.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic
from fault_harness import MODELS, late_drop, misaligned, run_case

from pipeline.apps.simulator import Simulator

pytestmark = pytest.mark.anyio

PROMPTS = [f"Write a short report on the canals of region {n}." for n in range(6)]


@pytest.mark.parametrize("model", MODELS)
async def test_a_late_drop_under_a_cap_resumes_to_the_uninterrupted_text(
    model: str, client: AsyncAnthropic, sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(model)
    caplog.set_level(logging.INFO, logger="rillet.resume")
    for seed, prompt in enumerate(PROMPTS):
        case = late_drop(model, prompt, rng)
        run = await run_case(client, case, tmp_path, seed=seed)
        reference = case.reference()["text"]
        assert run.result.outcome == "completed", run.result.error
        assert run.result.stop_reason == "max_tokens"
        assert [a.strategy for a in run.attempts][1:] in (["prefill"], ["continue"])
        assert misaligned(reference, run.text) == (0, 0), case
        assert run.file_text.startswith(reference)
    assert all("counted by the API" in record.getMessage() for record in caplog.records)
    assert len(caplog.records) == len(PROMPTS)


async def test_the_estimate_stands_in_when_counting_fails(
    client: AsyncAnthropic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The count answers 529: the resume still goes ahead, on the estimate, and the log says so."""
    caplog.set_level(logging.INFO, logger="rillet.resume")
    case = late_drop(MODELS[0], PROMPTS[0], random.Random(0), count_fail=True)
    run = await run_case(client, case, tmp_path)
    assert run.result.outcome == "completed", run.result.error
    assert [a.strategy for a in run.attempts] == ["initial", "prefill"]
    (record,) = caplog.records
    assert "estimated at 4 chars a token, as counting failed (OverloadedError)" in record.getMessage()


async def test_a_restatement_that_spends_the_budget_is_not_repeated(
    client: AsyncAnthropic, tmp_path: Path
) -> None:
    """A continue turn restates the partial's last words first, and they are billed: after a late
    drop the budget may run out before, or in the middle of, the restatement. What it restated is
    dropped all the same, so the report is the uninterrupted one's beginning, never a repeat."""
    rng = random.Random(1)
    for seed in range(20):
        case = late_drop(MODELS[1], f"Report on canals {seed}.", rng)
        case = dataclasses.replace(case, overlap_words=None)  # the model's own seeded restatement
        run = await run_case(client, case, tmp_path, seed=seed)
        reference = case.reference()["text"]
        assert run.result.outcome == "completed", run.result.error
        assert reference.startswith(run.text), case
