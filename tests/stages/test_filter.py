"""The filter stage: by event type and delta type, exclude wins, and a stream always ends."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from anthropic._models import construct_type
from anthropic.types import RawMessageStreamEvent

from pipeline.apps.run.sse_file import read_sse_events
from pipeline.events import CostUpdate, Item, StreamEnded, Usage
from pipeline.stages import StreamContext
from pipeline.stages.filter import FilterStage

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sse"
THINKING = FIXTURES / "sdk-stream-a-refusal.sse"
"""Thinking deltas, a signature delta, text deltas and the message events."""

FUTURE = construct_type(type_=RawMessageStreamEvent, value={"type": "some_future_event"})
COST = CostUpdate(0.01, estimated=False, model="claude-test", usage=Usage(), attempts=1)
END = StreamEnded("completed", "end_turn")


def stream() -> list[Any]:
    return [*(event for _, event in read_sse_events(THINKING)), FUTURE, COST, END]


def names(event: Any) -> str:
    """An event's type, with its delta type for a content_block_delta."""
    return f"{event.type}/{event.delta.type}" if event.type == "content_block_delta" else event.type


def passed(stage: FilterStage) -> Counter[str]:
    events = stream()
    out = [item.event for event in events for item in stage.process(Item("s", event, 0))]
    assert list(stage.finish()) == []
    assert out == [event for event in events if any(event is kept for kept in out)], "order and identity kept"
    return Counter(names(event) for event in out)


ALL = Counter(names(event) for event in stream())


def test_no_patterns_keep_everything() -> None:
    """An empty include means everything, and nothing is excluded."""
    assert passed(FilterStage()) == ALL


def test_exclude_by_event_type() -> None:
    """Excluding an event type drops all its items, whatever their delta type."""
    assert passed(FilterStage(exclude={"content_block_delta"})) == Counter(
        {name: n for name, n in ALL.items() if not name.startswith("content_block_delta")}
    )


def test_exclude_by_delta_type() -> None:
    """Excluding a delta type drops only the deltas of that type."""
    kept = passed(FilterStage(exclude={"thinking_delta"}))
    assert kept == ALL - Counter({"content_block_delta/thinking_delta": 4})


def test_include_with_exclude_wins() -> None:
    """include narrows to the named items; an exclude match drops an item even when included."""
    kept = passed(FilterStage(include={"content_block_delta", "message_stop"}, exclude={"thinking_delta"}))
    assert kept == Counter(
        {
            "content_block_delta/signature_delta": 1,
            "content_block_delta/text_delta": 1,
            "message_stop": 1,
            "rillet.end": 1,
        }
    )


def test_include_by_delta_type_and_glob() -> None:
    """A delta type in include keeps just those deltas; globs such as ``rillet.*`` match names."""
    assert passed(FilterStage(include={"text_delta", "rillet.*"})) == Counter(
        {"content_block_delta/text_delta": 1, "rillet.cost": 1, "rillet.end": 1}
    )


@pytest.mark.parametrize(
    ("include", "exclude"),
    [((), {"rillet.end"}), ((), {"*"}), ({"message_start"}, ()), ({"nothing"}, {"rillet.*"})],
    ids=["excluded-by-name", "excluded-by-star", "not-included", "both"],
)
def test_stream_end_is_never_dropped(include: set[str], exclude: set[str]) -> None:
    """rillet.end passes every filter: a stream must always end in every sink."""
    assert passed(FilterStage(include, exclude))["rillet.end"] == 1


def test_unknown_event_types_pass_and_can_be_named() -> None:
    """A future event type passes by default and is filtered by its name like any other."""
    assert passed(FilterStage())["some_future_event"] == 1
    assert passed(FilterStage(exclude={"some_future_event"}))["some_future_event"] == 0


def test_factory_builds_a_filter_per_stream() -> None:
    """The configured factory gives each stream its own stage with the same rule."""
    factory = FilterStage.factory(exclude=["thinking_delta"])
    ctx = StreamContext("s", "claude-test", {}, 0)
    first, second = factory(ctx), factory(ctx)
    assert first is not second
    assert isinstance(first, FilterStage)
    assert first.keeps("content_block_delta", "text_delta")
    assert not first.keeps("content_block_delta", "thinking_delta")
