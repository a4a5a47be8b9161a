"""The fan-out with real sinks: backpressure loses nothing, drops are counted, failures stay isolated."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO

import anyio
import pytest

from pipeline.errors import SinkError
from pipeline.events import Item
from pipeline.fanout import FanOut, SinkStatistics
from pipeline.sink import Buffer, OnError, OnFull, SinkSpec
from sinks.file import FileSink
from sinks.stdout import StdoutSink
from tests.sinks.conformance import FIXTURES, recorded_items, sample_items

REPORT = "sdk-stream-b-fallback.sse"


class GatedSink:
    """A sink as slow as the test wants: each write records its batch, then waits for the gate to open."""

    def __init__(self, name: str = "slow") -> None:
        self.name = name
        self.batches: list[list[Item]] = []
        self.gate = anyio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    async def write(self, batch: Sequence[Item]) -> None:
        self.batches.append(list(batch))
        await self.gate.wait()

    @property
    def items(self) -> list[Item]:
        return [item for batch in self.batches for item in batch]


def report_text() -> str:
    message = json.loads((FIXTURES / "expected" / REPORT.replace(".sse", ".json")).read_text("utf-8"))
    return "".join(block["text"] for block in message["content"] if block["type"] == "text")


def reports_in(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in folder.glob("*.md")}


def by_name(fanout: FanOut) -> dict[str, SinkStatistics]:
    return {lane.name: lane for lane in fanout.statistics()}


@pytest.mark.anyio
async def test_a_slow_sink_under_block_loses_nothing(tmp_path: Path) -> None:
    """A slow ``block`` sink holds the producer back; it and the file and stdout sinks get every item."""
    streams = [recorded_items(REPORT, stream_id=f"s{n}") for n in range(20)]
    items = [item for stream in streams for item in stream]
    slow = GatedSink()
    events, out = FileSink(tmp_path / "events.jsonl", mode="jsonl"), io.StringIO()
    reports = FileSink(tmp_path / "{stream_id}.md", mode="text", name="reports")
    specs = [
        SinkSpec(slow, Buffer(max_items=8)),
        SinkSpec(events),
        SinkSpec(reports),
        SinkSpec(StdoutSink(stream=out, err=io.StringIO())),
    ]
    sent = anyio.Event()
    async with FanOut(specs) as fanout, anyio.create_task_group() as tg:

        async def produce() -> None:
            for item in items:
                await fanout.send(item)
            sent.set()

        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        assert not sent.is_set()
        assert by_name(fanout)["slow"].queued == 8
        slow.gate.set()
        await sent.wait()
    assert slow.items == items
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(line["stream_id"], line["seq"]) for line in lines] == [(i.stream_id, i.seq) for i in items]
    assert reports_in(tmp_path) == {f"s{n}.md": report_text() for n in range(20)}
    assert out.getvalue() == report_text() + "\n"
    for lane in fanout.statistics():
        assert (lane.written, lane.dropped, lane.errors) == (len(items), 0, 0), lane
    assert events.statistics().write_calls < len(items) / 10, "the file sink should get batches"


@pytest.mark.anyio
async def test_many_producers_blocked_on_one_full_lane_all_get_through_in_order() -> None:
    """Producers blocked on a full ``block`` lane share one wait: batches bigger than the buffer,
    many producers at once, and each stream's items still arrive whole and in order."""
    streams = {f"s{n}": [Item(f"s{n}", seq, seq, seq=seq) for seq in range(40)] for n in range(12)}
    slow = GatedSink()
    async with FanOut([SinkSpec(slow, Buffer(max_items=5))]) as fanout, anyio.create_task_group() as tg:

        async def produce(items: list[Item]) -> None:
            for start in range(0, len(items), 7):
                await fanout.send_many(items[start : start + 7])

        for items in streams.values():
            tg.start_soon(produce, items)
        await anyio.wait_all_tasks_blocked()
        assert by_name(fanout)["slow"].queued == 5
        slow.gate.set()
    for stream_id, items in streams.items():
        assert [item for item in slow.items if item.stream_id == stream_id] == items
    assert (by_name(fanout)["slow"].written, by_name(fanout)["slow"].dropped) == (12 * 40, 0)


class FailingSink(GatedSink):
    """Fails its first write once the gate opens."""

    async def write(self, batch: Sequence[Item]) -> None:
        await super().write(batch)
        raise OSError("disk gone")


@pytest.mark.anyio
async def test_producers_blocked_on_a_lane_whose_sink_fails_all_go_on() -> None:
    """More producers wait on a full lane than it has room for; its sink fails: every one goes on,
    and every item is written or counted dropped."""
    failing = FailingSink("failing")
    async with FanOut([SinkSpec(failing, Buffer(max_items=2), OnError.DISABLE)]) as fanout:
        with anyio.fail_after(10):  # a producer left waiting would hang here, not fail
            async with anyio.create_task_group() as tg:
                for n in range(10):
                    tg.start_soon(fanout.send_many, [Item(f"s{n}", seq, seq, seq=seq) for seq in range(3)])
                await anyio.wait_all_tasks_blocked()
                failing.gate.set()
    lane = by_name(fanout)["failing"]
    assert lane.disabled
    assert (lane.written, lane.errors, lane.queued) == (0, 1, 0)
    assert lane.dropped == 30, "the failed batch, what was queued and what waited all count as dropped"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("on_full", "kept"),
    [(OnFull.DROP_NEWEST, [0, 1, 2, 3, 4]), (OnFull.DROP_OLDEST, [0, 96, 97, 98, 99])],
    ids=["drop_newest", "drop_oldest"],
)
async def test_drops_are_counted_and_do_not_slow_the_others(
    on_full: OnFull, kept: list[int], tmp_path: Path
) -> None:
    """A slow dropping sink keeps its policy's items and counts the rest; a file sink beside it gets all."""
    items = [Item("s1", event, seq, seq=seq) for seq, event in enumerate([sample_items()[1].event] * 100)]
    slow = GatedSink()
    events = FileSink(tmp_path / "events.jsonl", mode="jsonl")
    async with FanOut([SinkSpec(slow, Buffer(4, on_full)), SinkSpec(events)]) as fanout:
        await fanout.send(items[0])
        await anyio.wait_all_tasks_blocked()  # the slow sink now holds item 0 at its gate
        for item in items[1:]:
            await fanout.send(item)
        assert by_name(fanout)["slow"].dropped == 95
        slow.gate.set()
    assert [item.seq for item in slow.items] == kept
    assert (by_name(fanout)["slow"].written, by_name(fanout)["slow"].dropped) == (5, 95)
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 100 + 1  # + the incomplete marker
    assert by_name(fanout)["file"].dropped == 0


@pytest.mark.anyio
async def test_a_broken_pipe_disables_stdout_and_the_file_keeps_everything(
    tmp_path: Path, broken_pipe: TextIO
) -> None:
    """``rillet run | head`` with ``on_error = "disable"``: stdout stops, counted; the report is whole."""
    items = recorded_items(REPORT)
    specs = [
        SinkSpec(StdoutSink(stream=broken_pipe, err=io.StringIO()), on_error=OnError.DISABLE),
        SinkSpec(FileSink(tmp_path / "report.md")),
    ]
    async with FanOut(specs) as fanout:
        for item in items:
            await fanout.send(item)
    stdout = by_name(fanout)["stdout"]
    assert (stdout.errors, stdout.disabled) == (1, True)
    assert stdout.last_error is not None
    assert "broken pipe" in stdout.last_error
    assert fanout.failure is None
    assert (tmp_path / "report.md").read_text() == report_text()


@pytest.mark.anyio
async def test_a_broken_pipe_under_fail_raises_chained(broken_pipe: TextIO) -> None:
    """With ``on_error = "fail"`` the run's error is the sink's SinkError, chained to the BrokenPipeError."""

    async def run() -> None:
        async with FanOut([SinkSpec(StdoutSink(stream=broken_pipe, err=io.StringIO()))]) as fanout:
            await fanout.send(sample_items()[1])
            await fanout.failed.wait()

    with pytest.raises(SinkError, match="broken pipe") as caught:
        await run()
    assert str(caught.value).count("sink 'stdout'") == 1, "a sink's own SinkError is raised as it is"
    assert isinstance(caught.value.__cause__, BrokenPipeError)


@pytest.mark.anyio
async def test_an_unwritable_report_fails_before_any_item(tmp_path: Path) -> None:
    """A file sink that cannot open fails as the fan-out starts, chained to the OSError.

    Tests run as root, which chmod does not stop: the "folder" is a regular file instead.
    """
    (tmp_path / "file").write_text("")

    async def run() -> None:
        async with FanOut([SinkSpec(FileSink(tmp_path / "file" / "report.md"))]) as fanout:
            assert fanout.failed.is_set()

    with pytest.raises(SinkError, match="cannot open") as caught:
        await run()
    assert isinstance(caught.value.__cause__, NotADirectoryError)


@pytest.mark.anyio
async def test_cancelled_run_flushes_and_marks_the_report(tmp_path: Path) -> None:
    """Cancelled mid-stream, the fan-out still drains to the file sink, which keeps and marks the text."""
    path = tmp_path / "report.md"
    items = sample_items("s1", text=("partial ", "report"))[:-1]
    with anyio.CancelScope() as scope:
        async with FanOut([SinkSpec(FileSink(path))]) as fanout:
            for item in items:
                await fanout.send(item)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert path.read_text().startswith("partial report\n\n<!-- rillet: incomplete -->")
    assert by_name(fanout)["file"].written == len(items)


@pytest.mark.anyio
async def test_a_hung_sink_is_bounded_by_the_flush_timeout() -> None:
    """A sink that never finishes is cut off at ``flush_timeout``, reported, and its backlog counted."""
    hung = GatedSink("hung")
    async with FanOut([SinkSpec(hung, on_error=OnError.DISABLE)], flush_timeout=0.05) as fanout:
        for item in sample_items():
            await fanout.send(item)
    lane = by_name(fanout)["hung"]
    assert lane.last_error == "TimeoutError: flush did not finish within 0.05 s"
    assert lane.written == 0
    assert lane.written + lane.dropped == len(sample_items()), "the in-flight batch counts as dropped"


@pytest.mark.anyio
async def test_an_item_sent_after_the_fanout_closed_is_refused_not_lost() -> None:
    sink = GatedSink()
    sink.gate.set()
    async with FanOut([SinkSpec(sink)]) as fanout:
        await fanout.send(sample_items()[0])
    with pytest.raises(anyio.ClosedResourceError):
        await fanout.send(sample_items()[1])
    assert sink.items == [sample_items()[0]]
