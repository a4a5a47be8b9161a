"""The repetition stage: silent on real long text, quick on loops, once per episode, bounded work."""

from __future__ import annotations

import json
import pydoc_data.topics
import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.apps.run.sse_file import parse_sse_events
from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.events import AbortRequested, Item, RepetitionDetected
from pipeline.stages import StreamContext
from pipeline.stages.repetition import RepetitionSettings, RepetitionStage, find_loop

GPL3 = Path("/usr/share/common-licenses/GPL-3")
PYDOC = "".join(pydoc_data.topics.topics.values())
PROSE = (
    "The committee met on a Tuesday to discuss the budget for the coming year. Several members "
    "raised concerns about the rising cost of maintenance, while others argued that the new "
    "library wing should take priority. After a long debate, the chair proposed a compromise: "
    "the maintenance backlog would be cleared first, and the library plans revisited in spring. "
)
TEXT_BLOCK = {"type": "text", "text": ""}


def context() -> StreamContext:
    return StreamContext("s1", "claude-sonnet-4-5", {}, 0)


def deltas(text: str, seed: int, largest: int = 20) -> Iterator[str]:
    """``text`` in seeded random pieces of 1 to ``largest`` chars, as a stream splits it."""
    rng = random.Random(seed)
    start = 0
    while start < len(text):
        size = rng.randint(1, largest)
        yield text[start : start + size]
        start += size


def block_items(
    pieces: Iterator[str], block: dict[str, object] = TEXT_BLOCK, field: str = "text"
) -> list[Item]:
    """One content block of SDK events carrying ``pieces``, built by the recorded-stream reader."""
    delta_type = {"text": "text_delta", "thinking": "thinking_delta", "partial_json": "input_json_delta"}
    frames: list[dict[str, object]] = [{"type": "content_block_start", "index": 0, "content_block": block}]
    frames += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": delta_type[field], field: piece}}
        for piece in pieces
    ]
    frames.append({"type": "content_block_stop", "index": 0})
    body = "".join(f"event: {frame['type']}\ndata: {json.dumps(frame)}\n\n" for frame in frames)
    return [Item("s1", recorded.event, 0) for recorded in parse_sse_events(body)]


def run(items: list[Item], stage: RepetitionStage) -> list[tuple[int, object]]:
    """(raw chars streamed so far, event) for each event the stage added."""
    found: list[tuple[int, object]] = []
    streamed = 0
    for item in items:
        delta = getattr(item.event, "delta", None)
        streamed += len(getattr(delta, "text", "") or getattr(delta, "thinking", "") or "")
        out = list(stage.process(item))
        assert out[0] is item
        found += [(streamed, extra.event) for extra in out[1:]]
    found += [(streamed, extra.event) for extra in stage.finish()]
    return found


def detections(text: str, seed: int = 0, **options: object) -> list[tuple[int, object]]:
    return run(block_items(deltas(text, seed)), RepetitionStage(context(), RepetitionSettings(**options)))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1])
def test_gpl3_streamed_in_small_deltas_never_fires(seed: int) -> None:
    """The GPL-3 (35k chars) in random 1-20 char deltas: no detection."""
    assert detections(GPL3.read_text(), seed) == []


def test_pydoc_topics_streamed_in_small_deltas_never_fires() -> None:
    """Python's pydoc topics (465k chars of reST, tables and code) in random deltas: no detection."""
    assert detections(PYDOC, seed=7) == []


@pytest.mark.parametrize(
    "text",
    [
        "| name | value |\n|" + "-" * 200 + "|\n" + "".join(f"| row {i} | {i * 7} |\n" for i in range(200)),
        "".join(f"- **Item {i}**: the same description of an item.\n" for i in range(150)),
        "- [ ] TBD\n" * 10 + PROSE,
        "I love Python. " * 3 + PROSE,
        PROSE + "\n" + "─" * 120 + "\n" + PROSE,
        "\n```python\n" + "    self.field = None\n" * 40 + "```\n" + PROSE,
        "Contents\n" + "".join(f"Chapter {i} " + "." * 60 + f" {i * 12}\n" for i in range(1, 30)),
    ],
    ids=["dash-table", "bullets", "todo-list", "asked-for-three", "dividers", "fenced-code", "toc-leaders"],
)
def test_legitimate_repetitive_markdown_never_fires(text: str) -> None:
    """Tables, bullets, dividers and fenced code repeat on purpose, and stay below the thresholds."""
    assert detections(PROSE + text + PROSE) == []


@pytest.mark.parametrize("length", [200, 377, 500, 800])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paragraph_loop_is_caught_within_three_repetitions(length: int, seed: int) -> None:
    """A 200-800 char paragraph looping after normal prose fires by about 3 copies of it."""
    gpl = GPL3.read_text()
    start = random.Random(length).randrange(10_000, 30_000)
    unit = gpl[start : start + length]
    prefix = gpl[:5_000]
    found = detections(prefix + unit * 10, seed)
    assert len(found) == 1
    streamed, event = found[0]
    assert isinstance(event, RepetitionDetected)
    assert event.repeats >= 3
    assert (streamed - len(prefix)) / length <= 3.5
    assert event.sample.split()[:3] == unit[unit.index(event.sample.split()[0]) :].split()[:3]


@pytest.mark.parametrize(
    ("unit", "copies"),
    [
        ("Records near the old quarter suggest the instruments limited the inspectors. ", 4.5),
        ("Done.\nGoodbye.\n", 36.0),
        ("The ", 60.0),
        ("!", 250.0),
    ],
    ids=["sentence", "multi-line", "word", "one-char"],
)
def test_short_loops_are_caught_by_their_thresholds(unit: str, copies: float) -> None:
    """Shorter units need more copies (the calibrated table), and still fire well before 1100 chars."""
    found = detections(PROSE + unit * 400)
    streamed, event = found[0]
    assert isinstance(event, RepetitionDetected)
    assert (streamed - len(PROSE)) / len(unit) <= copies
    assert streamed - len(PROSE) <= 1100


@settings(max_examples=30, deadline=None)
@given(
    unit=st.text(alphabet=string.ascii_letters + " ", min_size=100, max_size=600).filter(
        lambda u: len(u.split()) > 0
    ),
    seed=st.integers(0, 1000),
)
def test_any_long_unit_loop_is_caught_by_three_and_a_half_copies(unit: str, seed: int) -> None:
    """Whatever the loop's unit, it fires by 3.5 copies of it (sooner when the unit has a sub-period)."""
    found = detections(PROSE + unit * 8, seed)
    assert found
    assert found[0][0] - len(PROSE) <= 3.5 * len(unit) + 64


def test_warn_reports_once_per_episode() -> None:
    """A long loop gives one warning; a second loop after normal text gives a second one."""
    first = "One loop paragraph that keeps coming back again and again in the text, word for word. "
    second = "A different loop, started later on, that also repeats itself verbatim without end here. "
    found = detections(PROSE + first * 40 + PROSE * 3 + second * 40)
    assert [event.period for _, event in found] == [len(first), len(second)]  # type: ignore[attr-defined]
    assert all(event.action == "warn" for _, event in found)  # type: ignore[attr-defined]


def test_abort_asks_the_runner_to_stop_and_goes_quiet() -> None:
    """Abort emits the detection then an AbortRequested, and nothing after it."""
    unit = "This paragraph repeats forever because the model is stuck in a loop, sadly. "
    found = detections(PROSE + unit * 40 + PROSE + unit * 40, action="abort")
    events = [event for _, event in found]
    assert [type(event) for event in events] == [RepetitionDetected, AbortRequested]
    assert isinstance(events[1], AbortRequested)
    assert events[1].outcome == "aborted_repetition"
    assert f"{len(unit)}-char passage" in events[1].reason


def test_code_fence_loosens_the_thresholds() -> None:
    """Ten copies of a 70-char line fire in prose, not inside a fence (split across deltas)."""
    line = "    result = compute_the_value(first_argument, second_argument) + 1\n"
    assert detections(PROSE + line * 10 + PROSE)
    assert detections(PROSE + "\n``" + "`python\n" + line * 10 + "```\n" + PROSE) == []


@pytest.mark.parametrize(
    ("block", "field", "channels", "fires"),
    [
        ({"type": "thinking", "thinking": "", "signature": ""}, "thinking", {"text", "thinking"}, True),
        ({"type": "thinking", "thinking": "", "signature": ""}, "thinking", {"text"}, False),
        ({"type": "text", "text": ""}, "text", {"thinking"}, False),
        ({"type": "tool_use", "id": "t", "name": "n", "input": {}}, "partial_json", {"tool_input"}, True),
    ],
    ids=["thinking-watched", "thinking-off", "text-off", "tool-input"],
)
def test_channels_choose_the_watched_blocks(
    block: dict[str, object], field: str, channels: set[str], fires: bool
) -> None:
    """Text and thinking are watched by default; tool input only when asked, with code thresholds."""
    unit = '{"row": "the same object repeated over and over in a long JSON array"}, '
    stage = RepetitionStage(context(), RepetitionSettings(channels=frozenset(channels)))  # type: ignore[arg-type]
    found = run(block_items(deltas(PROSE + unit * 20, 3), block, field), stage)
    assert bool(found) is fires


def test_a_block_left_open_is_checked_at_finish() -> None:
    """A stream that breaks off mid-loop (no content_block_stop) still gets its warning."""
    unit = "Stuck again in the same place, writing the same sentence as before, once more. "
    items = block_items(iter([PROSE, unit * 3, unit[:-1]]))[:-1]
    found = run(items, RepetitionStage(context(), RepetitionSettings(check_every=10_000)))
    assert [type(event) for _, event in found] == [RepetitionDetected]


def test_find_loop_only_searches_a_bounded_window() -> None:
    """A period beyond ``max_period`` is not seen, whatever the text holds: the work per check is bounded."""
    unit = "".join(random.Random(1).choices(string.ascii_lowercase + " ", k=3000))
    rules = RepetitionSettings().prose_rules
    assert find_loop(unit * 4, rules, RepetitionSettings()) is not None
    assert find_loop(unit * 4, rules, RepetitionSettings(max_period=2000)) is None


@settings(max_examples=200, deadline=None)
@given(
    unit=st.text(alphabet="ab c", min_size=1, max_size=40),
    copies=st.integers(0, 60),
    before=st.text(alphabet="abc xyz", max_size=300),
    start=st.integers(0, 400),
)
def test_find_loop_from_an_offset_is_find_loop_on_the_slice(
    unit: str, copies: int, before: str, start: int
) -> None:
    """The stage searches its window in place: ``start`` must see exactly what a copy of the window would."""
    text = before + unit * copies
    start = min(start, len(text))
    loop_settings = RepetitionSettings(window=256, max_period=85, needle=8)
    for rules in (loop_settings.prose_rules, loop_settings.code_rules):
        assert find_loop(text, rules, loop_settings, start) == find_loop(text[start:], rules, loop_settings)


@pytest.mark.anyio
@pytest.mark.parametrize(("scenario", "loops"), [("loop", True), ("report", False)])
async def test_simulator_streams_through_the_real_sdk(scenario: str, loops: bool) -> None:
    """The simulator's loop scenario is aborted; its report scenario (a long real-looking text) is not."""
    stage = RepetitionStage(context(), RepetitionSettings(action="abort"))
    found: list[object] = []
    async with open_simulator(SimulatorSettings(scenario=scenario, report_tokens=3000)) as sim:
        client = AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0)
        async with client:
            stream = await client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=4000,
                messages=[{"role": "user", "content": "Write a report."}],
                stream=True,
            )
            async with stream:
                async for event in stream:
                    found += [extra.event for extra in list(stage.process(Item("s1", event, 0)))[1:]]
                    if found:
                        break
    assert [type(event) for event in found] == ([RepetitionDetected, AbortRequested] if loops else [])
