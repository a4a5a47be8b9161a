"""A plugin mistake is one TypeError naming the plugin and its protocol, never a task group's traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from pipeline.apps.simulator import Simulator, open_simulator
from pipeline.client import make_client
from pipeline.events import Item
from pipeline.runner import Pipeline
from pipeline.sink import SinkSpec
from pipeline.stages import StreamContext
from pipeline.stages.accumulate import AccumulateStage
from sinks.file import FileSink

pytestmark = pytest.mark.anyio

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Say something."}],
}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with open_simulator() as simulator:
        yield simulator


class NoContext:
    """The first mistake the issue names: a stage class whose constructor takes no context."""

    def __init__(self) -> None:
        self.seen = 0

    def process(self, item: Item) -> Sequence[Item]:
        return (item,)

    def finish(self) -> Sequence[Item]:
        return ()


class ReturnsItem:
    def __init__(self, context: StreamContext) -> None:
        self.context = context

    def process(self, item: Item) -> Item:
        return item

    def finish(self) -> Sequence[Item]:
        return ()


class FinishReturnsNone:
    def __init__(self, context: StreamContext) -> None:
        self.context = context

    def process(self, item: Item) -> Sequence[Item]:
        return (item,)

    def finish(self) -> None:
        return None


class NoFinish:
    def __init__(self, context: StreamContext) -> None:
        self.context = context

    def process(self, item: Item) -> Sequence[Item]:
        return (item,)


class ProcessTakesTwo:
    def __init__(self, context: StreamContext) -> None:
        self.context = context

    def process(self, item: Item, extra: int) -> Sequence[Item]:
        return (item,)

    def finish(self) -> Sequence[Item]:
        return ()


def builds_a_string(context: StreamContext) -> Any:
    return "not a stage"


class Unnamed:
    async def __aenter__(self) -> Unnamed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def write(self, batch: Sequence[Item]) -> None:
        return None


class BlockingWrite(Unnamed):
    name = "blocking"

    def write(self, batch: Sequence[Item]) -> None:  # type: ignore[override]
        return None


@pytest.mark.parametrize(
    ("stages", "sinks", "expected"),
    [
        ([NoContext], [], r"stage factory test_plugin_checks\.NoContext cannot take .*StageFactory"),
        ([NoFinish], [], r"stage test_plugin_checks\.NoFinish has no finish\(\) method.*Stage protocol"),
        ([42], [], r"stage factory builtins\.int is not callable"),
        ([], [Unnamed()], r"sink test_plugin_checks\.Unnamed has no name .*Sink protocol"),
        ([], [BlockingWrite()], r"sink test_plugin_checks\.BlockingWrite\.write is not async.*Sink"),
    ],
    ids=["stage-without-context", "stage-without-finish", "not-callable", "sink-without-name", "sync-write"],
)
async def test_a_mistake_is_named_when_the_pipeline_is_built(
    sim: Simulator, stages: list[Any], sinks: list[Any], expected: str
) -> None:
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        with pytest.raises(TypeError, match=expected):
            Pipeline(client, stages=stages, sinks=[SinkSpec(sink) for sink in sinks])
    assert sim.requests == []


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([ReturnsItem, AccumulateStage], r"ReturnsItem\.process\(\) returned Item, not a sequence"),
        ([AccumulateStage, ReturnsItem], r"ReturnsItem\.process\(\) returned Item, not a sequence"),
        ([FinishReturnsNone], r"FinishReturnsNone\.finish\(\) returned NoneType, not a sequence"),
        ([ProcessTakesTwo], r"ProcessTakesTwo\.process\(\) takes 1 argument.*missing a required argument"),
        ([builds_a_string], r"stage builtins\.str \(from test_plugin_checks\.builds_a_string\) has no"),
    ],
    ids=[
        "process-returns-item-first",
        "process-returns-item-last",
        "finish-returns-none",
        "process-arity",
        "factory-result",
    ],
)
async def test_a_mistake_a_call_shows_is_one_type_error(
    sim: Simulator, tmp_path: Any, stages: list[Any], expected: str
) -> None:
    """Raised from ``run`` as itself (not in an ExceptionGroup), and the sinks are still closed."""
    out = tmp_path / "events.jsonl"
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        pipeline = Pipeline(client, stages=stages, sinks=[SinkSpec(FileSink(out, mode="jsonl"))])
        with pytest.raises(TypeError, match=expected) as caught:
            async with pipeline:
                await pipeline.run(REQUEST)
    assert "Stage protocol" in str(caught.value)
    assert out.exists()
