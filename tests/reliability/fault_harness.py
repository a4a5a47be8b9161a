"""Fault-injection runs: one logical stream against the simulator, through the real SDK, stages and sinks.

Shared by the tests in this folder and ``benchmarks/faults.py``, so that both say the same thing
by a run, a seeded mix of faults, and lost or duplicated characters.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from anthropic import AsyncAnthropic

from pipeline.apps.simulator import Simulator, SimulatorSettings, reference_plan
from pipeline.apps.simulator._events import iter_events
from pipeline.events import AttemptStarted, Item, ResponseHeaders
from pipeline.fanout import FanOut
from pipeline.runner import StreamResult, StreamRun
from pipeline.sink import Buffer, SinkSpec
from pipeline.source.resume import PrefillSupport, ResumeSettings
from pipeline.source.stream import Source
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.cost import CostStage
from sinks.file import FileSink

SIMULATOR = SimulatorSettings(report_tokens=300)
"""Short reports that end on their own (``end_turn``), well inside ``max_tokens``."""

MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6")
"""One that accepts prefill, one that does not (the SDK warns about ``claude-opus-4-5``: deprecated)."""

MAX_TOKENS = 4096

TOPICS = ("rivers", "harbours", "archives", "markets", "railways", "lighthouses", "canals", "mills")


class ListSink:
    """Keeps every item, for assertions on the stream the sinks saw."""

    def __init__(self) -> None:
        self.name = "list"
        self.items: list[Item] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def write(self, batch: Sequence[Item]) -> None:
        self.items.extend(batch)


@dataclass(frozen=True, slots=True)
class Case:
    """One run: a request, and the ``x-rillet-*`` headers that make it fail."""

    model: str
    prompt: str
    scenario: str = "report"
    drop_after: int | None = None
    fail_first: int | None = None
    drop_continuations: bool = False
    overlap_words: int | None = None
    max_attempts: int = 4
    on_thinking: Literal["fail", "restart"] = "fail"
    max_tokens: int = MAX_TOKENS
    count_fail: bool = False

    def body(self) -> dict[str, Any]:
        """The request body, as ``reference_text`` takes it."""
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": self.prompt}],
        }

    def request(self) -> dict[str, Any]:
        headers = {"x-rillet-scenario": self.scenario}
        if self.drop_after is not None:
            headers["x-rillet-drop-after"] = str(self.drop_after)
        if self.fail_first is not None:
            headers["x-rillet-fail-first"] = str(self.fail_first)
        if self.drop_continuations:
            headers["x-rillet-drop-continuations"] = "1"
        if self.overlap_words is not None:
            headers["x-rillet-overlap-words"] = str(self.overlap_words)
        if self.count_fail:
            headers["x-rillet-count-fail"] = "1"
        return {**self.body(), "extra_headers": headers}

    def reference(self) -> dict[str, Any]:
        """The uninterrupted answer's content blocks, as the accumulator dumps them."""
        content = self.scenario if self.scenario in ("tool_use", "thinking") else "report"
        plan = reference_plan(self.body(), SIMULATOR, scenario=content)
        return {"text": plan.text, "tools": [block.text for block in plan.blocks if block.type == "tool_use"]}


@dataclass
class Run:
    """One finished stream: what the runner said and what the sinks got."""

    case: Case
    result: StreamResult
    items: list[Item]
    file_text: str
    attempts: list[AttemptStarted] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    @property
    def content(self) -> list[dict[str, Any]]:
        return list((self.result.message or {}).get("content", ()))

    @property
    def text(self) -> str:
        """The accumulated message's text."""
        return "".join(block.get("text", "") for block in self.content if block["type"] == "text")


def mixed_cases(seed: int, count: int, models: Sequence[str] = MODELS) -> list[Case]:
    """A seeded mix: drops at random offsets (most), drops inside tool input, drops on every
    attempt, in-stream overloaded errors, 429 and 529 answers."""
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        model = models[i % len(models)]
        prompt = f"Write a short report on the {rng.choice(TOPICS)} of region {rng.randrange(10**6)}."
        kind = rng.randrange(10)
        if kind < 5:
            case = Case(model, prompt, drop_after=rng.randrange(0, 100), fail_first=1)
        elif kind == 5:
            case = Case(model, prompt, scenario="tool_use", drop_after=rng.randrange(0, 24), fail_first=1)
        elif kind == 6:
            case = Case(
                model, prompt, drop_after=rng.randrange(20, 45), drop_continuations=True, max_attempts=12
            )
        elif kind == 7:
            case = Case(model, prompt, scenario="overloaded", drop_after=rng.randrange(0, 100), fail_first=1)
        elif kind == 8:
            case = Case(model, prompt, scenario="rate_limited", fail_first=rng.randint(1, 2))
        else:
            case = Case(model, prompt, scenario="unavailable", fail_first=rng.randint(1, 2))
        cases.append(case)
    return cases


CAPPED_TOKENS = 280
"""A ``max_tokens`` below :data:`SIMULATOR`'s natural report length: the cap ends the report."""


def late_drop(model: str, prompt: str, rng: random.Random, **extra: Any) -> Case:
    """A report capped by ``max_tokens``, dropped in its last tenth (by tokens), resumed without the
    model restating anything (``overlap_words=0``), so that only the budget decides how it ends."""
    case = Case(model, prompt, max_tokens=CAPPED_TOKENS, overlap_words=0, **extra)
    plan = reference_plan(case.body(), SIMULATOR)
    assert plan.stop_reason == "max_tokens"
    tokens = 0
    late: list[int] = []
    for index, (kind, _, n, _) in enumerate(iter_events(plan, "msg", model)):
        tokens += n if kind == "content_block_delta" else 0
        if kind == "content_block_delta" and 0.9 * CAPPED_TOKENS <= tokens < CAPPED_TOKENS:
            late.append(index + 1)
    return dataclasses.replace(case, drop_after=rng.choice(late), fail_first=1)


async def run_case(
    client: AsyncAnthropic,
    case: Case,
    tmp: Path,
    *,
    seed: int = 0,
    support: PrefillSupport | None = None,
) -> Run:
    """Runs ``case`` through accumulate and cost stages into a list sink and a text file sink."""
    collected = ListSink()
    path = tmp / f"run-{seed}.md"
    specs = [SinkSpec(collected, Buffer(1_000_000)), SinkSpec(FileSink(path), Buffer(1_000_000))]
    request = case.request()
    run = StreamRun(request, (AccumulateStage, CostStage), f"run-{seed}")
    settings = ResumeSettings(
        wait=False, idle_timeout=30.0, max_attempts=case.max_attempts, on_thinking=case.on_thinking
    )
    source = Source(
        client,
        request,
        run.stream_id,
        resume=settings,
        prefill_support=support or PrefillSupport(),
        rng=random.Random(seed),
    )
    async with FanOut(specs) as fanout:
        result = await run.run(source, fanout)
    events = [item.event for item in collected.items]
    return Run(
        case,
        result,
        collected.items,
        path.read_text(encoding="utf-8"),
        [event for event in events if isinstance(event, AttemptStarted)],
        [event.request_id for event in events if isinstance(event, ResponseHeaders) and event.request_id],
    )


def misaligned(reference: str, text: str) -> tuple[int, int]:
    """Characters of ``reference`` missing from ``text``, and characters of ``text`` in excess of it."""
    if text == reference:
        return 0, 0
    lost = duplicated = 0
    matcher = difflib.SequenceMatcher(None, reference, text, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            lost += i2 - i1
            duplicated += j2 - j1
    return lost, duplicated


def billed(sim: Simulator, run: Run) -> tuple[int, list[int]]:
    """Input tokens the simulator billed over the run's attempts, and each attempt's planned output."""
    truths = [sim.truth(request_id) for request_id in run.request_ids]
    return sum(t["usage"]["input_tokens"] for t in truths), [t["usage"]["output_tokens"] for t in truths]
