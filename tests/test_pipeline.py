"""The whole pipeline against the simulator, through the real SDK over loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel
import pytest

from pipeline.apps.simulator import Simulator, SimulatorSettings, open_simulator, reference_text
from pipeline.client import make_client
from pipeline.config import DEFAULT_STAGES, RepetitionStageConfig
from pipeline.events import Item, ResponseHeaders, StreamEnded, report_text
from pipeline.runner import Pipeline
from pipeline.sink import Buffer, OnError, SinkSpec
from pipeline.stages import StageFactory

MODEL = "claude-sonnet-4-6"


def request(prompt: str = "A report on rivers.", max_tokens: int = 1500, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


class RecordingSink:
    """Keeps every item; optionally slow, to exercise backpressure; optionally failing."""

    def __init__(self, name: str = "record", *, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.name = name
        self.items: list[Item] = []
        self.batches = 0
        self._delay = delay
        self._fail_after = fail_after
        self._text_wanted: tuple[int, anyio.Event] | None = None
        self.closed = False

    def has_text(self, chars: int) -> anyio.Event:
        """Set once at least ``chars`` characters of text were written."""
        self._text_wanted = (chars, anyio.Event())
        return self._text_wanted[1]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closed = True

    async def write(self, batch: Sequence[Item]) -> None:
        if self._fail_after is not None and len(self.items) >= self._fail_after:
            raise OSError(28, "No space left on device")
        if self._delay:
            await anyio.sleep(self._delay)
        self.batches += 1
        self.items.extend(batch)
        if self._text_wanted is not None and len(self.text()) >= self._text_wanted[0]:
            self._text_wanted[1].set()

    def text(self, stream_id: str | None = None) -> str:
        return "".join(report_text(i) for i in self.items if stream_id is None or i.stream_id == stream_id)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with open_simulator(SimulatorSettings()) as running:
        yield running


def stages() -> list[StageFactory]:
    return [stage.factory() for stage in DEFAULT_STAGES]


@pytest.mark.anyio
async def test_a_slow_sink_under_block_gets_everything_with_a_bounded_queue(sim: Simulator) -> None:
    """A slow `block` sink slows the stream down but loses nothing, and its queue never passes its bound."""
    slow = RecordingSink("slow", delay=0.002)
    fast = RecordingSink("fast")
    deepest = 0
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        pipeline = Pipeline(
            client, stages=stages(), sinks=[SinkSpec(slow, Buffer(16)), SinkSpec(fast, Buffer(4096))]
        )

        async def watch() -> None:
            nonlocal deepest
            while True:
                deepest = max(deepest, pipeline.fanout.statistics()[0].queued)
                await anyio.lowlevel.checkpoint()

        async with pipeline, anyio.create_task_group() as tg:
            tg.start_soon(watch)
            result = await pipeline.run(request())
            tg.cancel_scope.cancel()
    assert result.outcome == "completed"
    assert slow.text() == fast.text() == reference_text(request())
    assert [item.seq for item in slow.items] == list(range(len(slow.items)))
    assert 0 < deepest <= 16
    assert slow.batches < len(slow.items)


@pytest.mark.anyio
async def test_concurrent_streams_share_sinks_and_each_ends_once(sim: Simulator) -> None:
    """Five streams at once through one fan-out: each arrives whole, in order, with one end."""
    sink = RecordingSink()
    prompts = [f"Report number {n} on rivers." for n in range(5)]
    results = {}
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        async with Pipeline(client, stages=stages(), sinks=[SinkSpec(sink)]) as pipeline:

            async def one(prompt: str) -> None:
                results[prompt] = await pipeline.run(request(prompt, max_tokens=400))

            async with anyio.create_task_group() as tg:
                for prompt in prompts:
                    tg.start_soon(one, prompt)
    for prompt in prompts:
        result = results[prompt]
        assert result.outcome == "completed"
        own = [item for item in sink.items if item.stream_id == result.stream_id]
        assert [item.seq for item in own] == list(range(len(own)))
        assert sum(isinstance(item.event, StreamEnded) for item in own) == 1
        assert isinstance(own[-1].event, StreamEnded)
        assert sink.text(result.stream_id) == reference_text(request(prompt, max_tokens=400))
        assert result.message is not None
        assert result.message["content"][0]["text"] == sink.text(result.stream_id)


@pytest.mark.anyio
async def test_repetition_abort_closes_the_upstream_response(sim: Simulator) -> None:
    """The `loop` scenario under `abort`: the outcome says so and the simulator sees the client leave."""
    sink = RecordingSink()
    factories = [
        stage.factory()
        if stage.type != "repetition"
        else RepetitionStageConfig(type="repetition", action="abort").factory()
        for stage in DEFAULT_STAGES
    ]
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        async with Pipeline(client, stages=factories, sinks=[SinkSpec(sink)]) as pipeline:
            looping = {"x-rillet-scenario": "loop", "x-rillet-tokens-per-s": "4000"}
            result = await pipeline.run(request(max_tokens=8000, extra_headers=looping))
    assert result.outcome == "aborted_repetition"
    assert result.stop_reason is None
    headers = next(item.event for item in sink.items if isinstance(item.event, ResponseHeaders))
    with anyio.fail_after(5):
        while not (truth := sim.truth(headers.request_id or ""))["disconnected"]:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert not truth["completed"]
    assert result.cost is not None
    assert result.cost.usage.output_tokens < 8000


@pytest.mark.anyio
async def test_cancel_keeps_the_partial_text(sim: Simulator) -> None:
    """`StreamRun.cancel()` closes the upstream request; what arrived stays and the outcome is cancelled."""
    sink = RecordingSink()
    paced = request(max_tokens=2000, extra_headers={"x-rillet-tokens-per-s": "400"})
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        async with Pipeline(client, stages=stages(), sinks=[SinkSpec(sink)]) as pipeline:
            stream = pipeline.stream(paced)
            async with anyio.create_task_group() as tg:

                async def cancel_after_some_text() -> None:
                    await sink.has_text(200).wait()
                    stream.cancel()

                tg.start_soon(cancel_after_some_text)
                result = await pipeline.run_stream(stream)
    assert result.outcome == "cancelled"
    text = sink.text()
    assert 200 <= len(text) < len(reference_text(paced))
    assert reference_text(paced).startswith(text)
    assert result.message is not None
    assert result.message["content"][0]["text"] == text
    assert isinstance(sink.items[-1].event, StreamEnded)


@pytest.mark.anyio
@pytest.mark.parametrize("on_error", [OnError.DISABLE, OnError.FAIL])
async def test_a_failing_sink_is_isolated_by_its_policy(sim: Simulator, on_error: OnError) -> None:
    """A full disk: `disable` lets the stream finish into the others; `fail` stops it, others flushed."""
    healthy, failing = RecordingSink("healthy"), RecordingSink("disk", fail_after=5)
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        pipeline = Pipeline(
            client, stages=stages(), sinks=[SinkSpec(healthy), SinkSpec(failing, on_error=on_error)]
        )
        try:
            async with pipeline:
                result = await pipeline.run(
                    request(max_tokens=3000, extra_headers={"x-rillet-tokens-per-s": "3000"})
                )
        except Exception as exc:
            raised: Exception | None = exc
        else:
            raised = None
    disk = next(s for s in pipeline.fanout.statistics() if s.name == "disk")
    assert disk.errors == 1
    assert disk.disabled
    assert "No space left on device" in (disk.last_error or "")
    assert isinstance(healthy.items[-1].event, StreamEnded)
    if on_error is OnError.DISABLE:
        assert raised is None
        assert result.outcome == "completed"
        assert healthy.text() == reference_text(request(max_tokens=3000))
    else:
        assert raised is not None
        assert "No space left on device" in str(raised)
        assert result.outcome == "error"
        assert result.error_type == "sink_error"
        assert len(healthy.text()) < len(reference_text(request(max_tokens=3000)))
    assert healthy.closed
    assert failing.closed


@pytest.mark.anyio
async def test_latency_and_cost_agree_with_the_simulator_truth(sim: Simulator) -> None:
    """TTFT measured at the source is close to the server's own send time; cost is from usage."""
    sink = RecordingSink()
    timed = request(max_tokens=300, extra_headers={"x-rillet-ttft-ms": "150", "x-rillet-tokens-per-s": "500"})
    async with make_client(api_key="k", base_url=sim.base_url) as client:
        async with Pipeline(client, stages=stages(), sinks=[SinkSpec(sink)]) as pipeline:
            result = await pipeline.run(timed)
    assert result.latency is not None
    assert result.latency.to_first_delta is not None
    headers = next(item.event for item in sink.items if isinstance(item.event, ResponseHeaders))
    truth = sim.truth(headers.request_id or "")
    first_delta_ns = next(
        event["sent_ns"] for event in truth["events"] if event["type"] == "content_block_delta"
    )
    measured_ns = next(
        item.received_ns for item in sink.items if getattr(item.event, "type", "") == "content_block_delta"
    )
    assert 0 <= measured_ns - first_delta_ns < 50_000_000
    assert result.latency.to_first_delta >= 0.15
    assert result.cost is not None
    assert not result.cost.estimated
    assert result.cost.usage.output_tokens == truth["usage"]["output_tokens"]
    assert result.cost.usd > 0
