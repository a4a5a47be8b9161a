"""Fault injection at scale: 1,000 streams, each dropped, cut off or refused, must end with the exact text.

A seeded mix (``tests/reliability/fault_harness.py``: drops at random offsets, drops inside tool
input, drops on every attempt, in-stream overloaded errors, 429 and 529 answers) over models that
accept prefill and one that does not, against the in-process simulator on loopback, through the
real SDK, the accumulate and cost stages and a text file sink. Each run's accumulated text and
file are aligned with the uninterrupted reference (difflib opcodes: every character of the
reference not matched is lost, every character of the output not matched is duplicated), and a
tool call must equal the reference's.

Then ``--late-drops`` more runs (200 by default, both models) cut a report that ``max_tokens``
ends in the last tenth of its tokens (``late_drop``): the resume's budget is counted with
``count_tokens``, and the resumed text must equal the uninterrupted one to the character (the file
sink's copy adds the ``max_tokens`` marker after it). The last lines are the verdicts:

    late_drops=200 exact=200 lost_chars=0 duplicated_chars=0
    runs=1200 lost_chars=0 duplicated_chars=0 failed=0

    /work/venv/bin/python benchmarks/faults.py [--runs 1000] [--late-drops 200] [--concurrency 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import anyio
from anthropic import AsyncAnthropic

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reliability")]

from fault_harness import (  # noqa: E402
    MODELS,
    SIMULATOR,
    TOPICS,
    Case,
    late_drop,
    misaligned,
    mixed_cases,
    run_case,
)

from pipeline.apps.simulator import open_simulator  # noqa: E402


def _failure(
    run_text: str, file_text: str, reference: dict[str, object], tools: list[object], *, capped: bool
) -> str | None:
    if file_text != run_text and not (capped and file_text.startswith(run_text)):
        return "the file sink's text differs from the accumulated text"
    expected = [json.loads(raw) for raw in reference["tools"]]  # type: ignore[attr-defined]
    if tools != expected:
        return f"tool calls {tools!r} differ from {expected!r}"
    return None


async def main(args: argparse.Namespace) -> int:
    cases = mixed_cases(args.seed, args.runs)
    rng = random.Random(f"late:{args.seed}")
    late = [
        late_drop(
            MODELS[i % len(MODELS)], f"Write a short report on the {rng.choice(TOPICS)} of region {i}.", rng
        )
        for i in range(args.late_drops)
    ]
    cases += late
    totals = collections.Counter[str]()
    capped = collections.Counter[str]()
    strategies = collections.Counter[str]()
    failures: list[str] = []
    limiter = anyio.CapacityLimiter(args.concurrency)
    started = time.perf_counter()

    async def one(index: int, case: Case, client: AsyncAnthropic, tmp: Path) -> None:
        async with limiter:
            run = await run_case(client, case, tmp, seed=index)
        reference = case.reference()
        lost, duplicated = misaligned(str(reference["text"]), run.text)
        totals["lost"] += lost
        totals["duplicated"] += duplicated
        if index >= args.runs:
            capped.update(lost=lost, duplicated=duplicated, exact=run.text == reference["text"])
        strategies.update(attempt.strategy for attempt in run.attempts)
        tools = [block.get("input") for block in run.content if block["type"] == "tool_use"]
        problem = (
            f"ended {run.result.outcome}: {run.result.error}"
            if run.result.outcome != "completed"
            else _failure(run.text, run.file_text, reference, tools, capped=index >= args.runs)
        )
        if problem or lost or duplicated:
            totals["failed"] += 1
            failures.append(f"run {index} {case}: lost={lost} duplicated={duplicated} {problem or ''}")

    with tempfile.TemporaryDirectory() as tmp:
        async with open_simulator(SIMULATOR) as sim:
            async with AsyncAnthropic(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
                async with anyio.create_task_group() as tg:
                    for index, case in enumerate(cases):
                        tg.start_soon(one, index, case, client, Path(tmp))
    elapsed = time.perf_counter() - started
    for line in failures[:20]:
        print(line)
    print(f"attempts by strategy: {dict(sorted(strategies.items()))}; {elapsed:.1f} s")
    print(
        f"late_drops={len(late)} exact={capped['exact']} lost_chars={capped['lost']} "
        f"duplicated_chars={capped['duplicated']}"
    )
    print(
        f"runs={len(cases)} lost_chars={totals['lost']} duplicated_chars={totals['duplicated']} "
        f"failed={totals['failed']}"
    )
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--late-drops", type=int, default=200, help="capped reports cut in their last tenth")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    sys.exit(anyio.run(main, parser.parse_args()))
