"""The file sink: text and JSON lines from recorded streams, atomic finish, marked partial files, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from anthropic._models import construct_type
from anthropic.types import RawMessageStreamEvent

from pipeline.errors import ConfigError, SinkError
from pipeline.events import (
    AttemptStarted,
    BlockCompleted,
    CostUpdate,
    FirstToken,
    Item,
    LatencySummary,
    MessageAccumulated,
    StreamEnded,
    Usage,
)
from sinks.file import FileSink, FileSinkStatistics
from tests.sinks.conformance import FIXTURES, recorded_items, sample_items

RECORDINGS = sorted(path.name for path in FIXTURES.glob("sdk-*.sse"))
MARKER = "<!-- rillet: incomplete -->"
ENVELOPE = ["stream_id", "seq", "received_ns", "attempt", "type", "event"]


def expected_text(name: str) -> str:
    """The text blocks of the message the SDK accumulated from the same recording, concatenated."""
    message = json.loads((FIXTURES / "expected" / name.replace(".sse", ".json")).read_text("utf-8"))
    return "".join(block["text"] for block in message["content"] if block["type"] == "text")


def marked(text: str, reason: str) -> str:
    """Text as the sink leaves it when incomplete: the marker, with the reason and the size received."""
    return f"{text}\n\n{MARKER}\n> **Incomplete report:** {reason}, after {len(text):,} characters.\n"


def wire_events(name: str) -> list[dict[str, Any]]:
    """The ``data`` of every event the SDK yields (``ping`` skipped, ``error`` raised), from the recording."""
    lines = (FIXTURES / name).read_text("utf-8").splitlines()
    data = [json.loads(line.removeprefix("data:")) for line in lines if line.startswith("data:")]
    return [event for event in data if event["type"] not in ("ping", "error")]


def with_stream(items: Sequence[Item], stream_id: str) -> list[Item]:
    return [dataclasses.replace(item, stream_id=stream_id) for item in items]


def ended(outcome: Any, stop_reason: str | None = None, error: str | None = None) -> Item:
    return Item("s1", StreamEnded(outcome=outcome, stop_reason=stop_reason, error=error), 0)


async def write_all(sink: FileSink, *batches: Sequence[Item]) -> None:
    async with sink:
        for batch in batches:
            await sink.write(batch)


@pytest.mark.anyio
@pytest.mark.parametrize("name", RECORDINGS)
async def test_text_is_the_accumulated_text(name: str, tmp_path: Path) -> None:
    """Text mode writes exactly the text the SDK accumulates; a max_tokens cut adds the marker."""
    path = tmp_path / "report.md"
    await write_all(FileSink(path, mode="text"), recorded_items(name))
    text = path.read_text("utf-8")
    expected = expected_text(name)
    if name == "sdk-incomplete_partial_json_response.sse":
        assert text.startswith(expected + "\n\n" + MARKER)
        assert "stop_reason 'max_tokens'" in text
    else:
        assert text == expected
    assert os.listdir(tmp_path) == ["report.md"]


@pytest.mark.anyio
async def test_text_of_a_failed_stream_is_kept_and_marked(tmp_path: Path) -> None:
    """A stream that broke off with an error event keeps its text, marked with the outcome and error."""
    path = tmp_path / "report.md"
    sink = FileSink(path, mode="text")
    await write_all(sink, recorded_items("written-error-mid-stream.sse"))
    received = "The first section of the report describes the river"
    text = path.read_text("utf-8")
    assert text.startswith(
        f"{received}\n\n{MARKER}\n> **Incomplete report:** the stream ended with outcome 'error': "
        "overloaded_error: Overloaded ("
    )
    assert text.endswith(f"written-error-mid-stream.sse:17), after {len(received)} characters.\n")
    assert sink.statistics() == FileSinkStatistics(0, 0, 1, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("name", [*RECORDINGS, "written-error-mid-stream.sse"])
async def test_jsonl_has_one_line_per_item_that_round_trips(name: str, tmp_path: Path) -> None:
    """Each item is one line: the envelope, then the event exactly as the wire sent it."""
    path = tmp_path / "events.jsonl"
    items = recorded_items(name)
    await write_all(FileSink(path, mode="jsonl"), items[:3], items[3:])
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    if items[-1].event.outcome != "completed":
        assert lines.pop()["type"] == "rillet.incomplete"
    assert len(lines) == len(items)
    for line, item in zip(lines, items, strict=True):
        assert list(line) == ENVELOPE
        assert (line["stream_id"], line["seq"], line["received_ns"], line["attempt"]) == (
            item.stream_id,
            item.seq,
            item.received_ns,
            item.attempt,
        )
        assert line["type"] == item.event.type
    assert [line["event"] for line in lines[:-1]] == wire_events(name)
    rebuilt = [construct_type(type_=RawMessageStreamEvent, value=line["event"]) for line in lines[:-1]]
    assert rebuilt == [item.event for item in items[:-1]]
    assert StreamEnded(**lines[-1]["event"]) == items[-1].event


@pytest.mark.anyio
async def test_jsonl_serialises_rillet_unknown_and_odd_events(tmp_path: Path) -> None:
    """rillet's dataclasses, an unknown future event and a plain object all become JSON."""
    usage = Usage(input_tokens=3, output_tokens=5)
    future = construct_type(type_=RawMessageStreamEvent, value={"type": "brand_new", "extra": {"a": [1]}})
    events = [
        AttemptStarted(attempt=2, strategy="continue", reason="ReadError"),
        CostUpdate(usd=0.25, estimated=False, model="claude-opus-4-5", usage=usage, attempts=2),
        LatencySummary(0.1, 0.2, 0.3, 0.3, None, 1.5, 0.01, (0.5, 0.25), 5),
        BlockCompleted(index=0, block={"type": "tool_use", "input": {"city": "Paris"}}),
        MessageAccumulated(message={"content": []}, complete=True),
        FirstToken(kind="text", seconds=0.5),
        future,
        SimpleNamespace(type="odd", payload=object()),
    ]
    path = tmp_path / "events.jsonl"
    items = [Item("s1", event, 7, 2, seq) for seq, event in enumerate(events)]
    await write_all(FileSink(path, mode="jsonl"), items)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [line["type"] for line in lines[:-1]] == [getattr(event, "type", "") for event in events]
    assert lines[1]["event"]["usage"] == dataclasses.asdict(usage)
    assert lines[2]["event"]["gaps"] == [0.5, 0.25]
    assert lines[6]["event"] == {"type": "brand_new", "extra": {"a": [1]}}
    assert lines[7]["event"]["payload"].startswith("<object object")
    assert lines[-1]["type"] == "rillet.incomplete"  # no StreamEnded arrived


@pytest.mark.anyio
async def test_written_under_part_name_then_renamed(tmp_path: Path) -> None:
    """Until its stream completes, the file is ``.part`` and the previous run's file is untouched."""
    path = tmp_path / "report.md"
    path.write_text("the previous run's report")
    items = sample_items("s1", text=("one", " two"))
    async with FileSink(path, mode="text") as sink:
        await sink.write(items[:-1])
        assert path.read_text() == "the previous run's report"
        assert (tmp_path / "report.md.part").exists()
        await sink.write(items[-1:])
        assert path.read_text() == "one two"
        assert not (tmp_path / "report.md.part").exists()
        assert sink.statistics() == FileSinkStatistics(0, 1, 0, 1)  # the end added no text to write


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("end", "reason"),
    [
        ([ended("cancelled")], "the stream ended with outcome 'cancelled'"),
        ([ended("aborted_repetition")], "the stream ended with outcome 'aborted_repetition'"),
        ([ended("error", error="boom\nat line 2")], "the stream ended with outcome 'error': boom at line 2"),
        ([], "the stream did not end before the sink closed"),
    ],
    ids=["cancelled", "aborted", "error", "no-end"],
)
async def test_incomplete_text_is_kept_and_marked(end: list[Item], reason: str, tmp_path: Path) -> None:
    """A stream that did not complete keeps its text, under the final name, with a visible marker."""
    path = tmp_path / "report.md"
    sink = FileSink(path, mode="text")
    await write_all(sink, sample_items("s1", text=("a" * 12_000, "b" * 345))[:-1], end)
    assert path.read_text() == marked("a" * 12_000 + "b" * 345, reason)
    assert path.read_text().endswith("after 12,345 characters.\n")
    assert sink.statistics().incomplete_files == 1
    assert os.listdir(tmp_path) == ["report.md"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (asyncio.CancelledError(), "the run was cancelled before the stream ended"),
        (KeyError("x"), "the run failed (KeyError) before the stream ended"),
    ],
    ids=["cancelled", "failed"],
)
async def test_closed_by_an_exception_is_marked(exc: BaseException, reason: str, tmp_path: Path) -> None:
    """A sink closed by a cancellation or an error (as the fan-out does, shielded) marks the file."""
    path = tmp_path / "report.md"
    sink = FileSink(path, mode="text")
    await sink.__aenter__()
    await sink.write(sample_items("s1")[:-1])
    await sink.__aexit__(type(exc), exc, None)
    assert path.read_text() == marked("Hello world", reason)


@pytest.mark.anyio
async def test_a_cancelled_close_still_finishes_the_file(tmp_path: Path) -> None:
    """Unshielded by a fan-out, a close under cancellation still marks and renames (file ops are shielded)."""
    path = tmp_path / "report.md"
    with anyio.CancelScope() as scope:
        async with FileSink(path, mode="text") as sink:
            await sink.write(sample_items("s1")[:-1])
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    reason = "the run was cancelled before the stream ended"
    assert path.read_text() == marked("Hello world", reason)


@pytest.mark.anyio
async def test_jsonl_incomplete_marker_is_a_last_line(tmp_path: Path) -> None:
    """An events log whose streams did not all complete ends with a ``rillet.incomplete`` line."""
    path = tmp_path / "events.jsonl"
    s1, s2 = sample_items("s1"), sample_items("s2")
    await write_all(FileSink(path, mode="jsonl"), s1, s2[:-1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(s1) + len(s2)
    assert lines[-1] == {
        "type": "rillet.incomplete",
        "reason": "the stream did not end before the sink closed",
        "streams": {"s1": "completed", "s2": None},
        "lines": len(s1) + len(s2) - 1,
    }


@pytest.mark.anyio
async def test_jsonl_log_shared_by_streams_is_whole_when_all_complete(tmp_path: Path) -> None:
    """Without ``{stream_id}`` an events log takes every stream, interleaved, and is finished at close."""
    path = tmp_path / "events.jsonl"
    s1, s2 = sample_items("s1"), sample_items("s2")
    interleaved = [item for pair in zip(s1, s2, strict=True) for item in pair]
    sink = FileSink(path, mode="jsonl")
    async with sink:
        await sink.write(interleaved)
        assert not path.exists()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["stream_id"], line["seq"]) for line in lines] == [(i.stream_id, i.seq) for i in interleaved]
    assert sink.statistics() == FileSinkStatistics(0, 1, 0, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["text", "jsonl"])
async def test_stream_id_template_writes_one_file_per_stream(mode: Any, tmp_path: Path) -> None:
    """``{stream_id}`` in the name gives each stream its file, each finished when its stream ends."""
    a = sample_items("a", text=("alpha",))
    b = sample_items("b/../c", text=("beta",))
    sink = FileSink(tmp_path / "out-{stream_id}.txt", mode=mode)
    async with sink:
        await sink.write([*a[:-1], *b[:-1]])
        assert sink.statistics().open_files == 2
        await sink.write([a[-1]])
        assert sink.statistics().open_files == 1
    assert sorted(os.listdir(tmp_path)) == ["out-a.txt", "out-b%2F..%2Fc.txt"]
    if mode == "text":
        assert (tmp_path / "out-a.txt").read_text() == "alpha"
        assert (tmp_path / "out-b%2F..%2Fc.txt").read_text().startswith("beta\n\n" + MARKER)
    assert sink.statistics() == FileSinkStatistics(0, 1, 1, 3 if mode == "text" else 4)


@pytest.mark.anyio
async def test_a_second_stream_is_refused_by_a_text_file(tmp_path: Path) -> None:
    """Two streams in one text file would interleave: the second is refused, the first's text kept."""
    path = tmp_path / "report.md"
    with pytest.raises(SinkError, match=r"put \{stream_id\} in the path"):
        await write_all(FileSink(path, mode="text"), [*sample_items("s1")[:-1], *sample_items("s2")])
    text = path.read_text()
    assert text.startswith("Hello world\n\n" + MARKER)
    assert "the run failed (SinkError)" in text


@pytest.mark.anyio
async def test_an_item_after_its_stream_ended_is_refused(tmp_path: Path) -> None:
    """A stream's file is finished at its end: a later item of that stream is a bug, said so."""
    items = sample_items("s1")
    with pytest.raises(SinkError, match="after its StreamEnded"):
        await write_all(FileSink(tmp_path / "{stream_id}.md"), items, items[-1:])
    assert (tmp_path / "s1.md").read_text() == "Hello world"


@pytest.mark.anyio
async def test_unwritable_folder_fails_on_enter_chained(tmp_path: Path) -> None:
    """A folder that cannot hold the file fails at once, chained to the OSError.

    Tests run as root, and chmod does not stop root from writing, so the "folder" is a regular file.
    """
    regular = tmp_path / "regular-file"
    regular.write_text("")
    with pytest.raises(SinkError, match="cannot open") as caught:
        await write_all(FileSink(regular / "report.md"))
    assert isinstance(caught.value.__cause__, NotADirectoryError)
    with pytest.raises(SinkError, match="does not exist"):
        await write_all(FileSink(tmp_path / "missing" / "{stream_id}.md"))


@pytest.mark.anyio
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_full_disk_fails_chained_and_releases(tmp_path: Path) -> None:
    """A full disk (``/dev/full`` behind the ``.part`` name) raises a SinkError chained to ENOSPC at the
    first batch, which is flushed as it is written."""
    (tmp_path / "report.md.part").symlink_to("/dev/full")
    with pytest.raises(SinkError, match="cannot write") as caught:
        await write_all(FileSink(tmp_path / "report.md", mode="text"), sample_items("s1")[:-1])
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert not (tmp_path / "report.md").exists()


def test_bad_configuration_is_refused() -> None:
    """An unknown mode, or ``{stream_id}`` in a folder name, is a configuration error."""
    with pytest.raises(ConfigError, match="'csv'"):
        FileSink("x", mode="csv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="in the file name"):
        FileSink("{stream_id}/report.md")


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, which aiofiles hands every call to: counts the real thread hops."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.calls: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.calls.append(getattr(getattr(fn, "func", fn), "__name__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


@pytest.mark.parametrize("mode", ["text", "jsonl"])
def test_one_thread_hop_per_batch(mode: Any, tmp_path: Path) -> None:
    """A batch of 500 items costs one thread hop (a write and its flush), counted at the executor.

    A fresh event loop (``anyio.run``) gets the counting executor, so no other test shares it.
    """
    items = sample_items("s1", text=[f"word {n} " for n in range(500)])
    executor = CountingExecutor()

    async def main() -> list[list[str]]:
        asyncio.get_running_loop().set_default_executor(executor)
        hops = []
        async with FileSink(tmp_path / "out", mode=mode) as sink:
            for batch in (items[:250], items[250:-1], items[-1:]):
                before = len(executor.calls)
                await sink.write(batch)
                hops.append(executor.calls[before:])
        return hops

    hops = anyio.run(main, backend="asyncio")
    assert hops[:2] == [["_write_through"], ["_write_through"]]
    finish = ["flush", "fsync", "close", "replace"]
    if mode == "text":  # the end adds no text, and finishes the stream's file at once
        assert hops[2] == finish
        assert executor.calls == ["_open_destination", *["_write_through"] * 2, *finish]
    else:  # the end is a line, and the shared log is finished at close
        assert hops[2] == ["_write_through"]
        assert executor.calls == ["_open_destination", *["_write_through"] * 3, *finish]


@pytest.mark.anyio
async def test_a_lone_surrogate_is_kept_not_fatal(tmp_path: Path) -> None:
    """A lone surrogate (a ``\\ud83d`` escape cut from its pair) is written as that escape, not a crash."""
    items = sample_items("s1", text=("ok \ud83d", " end"))
    await write_all(FileSink(tmp_path / "report.md"), items)
    await write_all(FileSink(tmp_path / "events.jsonl", mode="jsonl"), items)
    assert (tmp_path / "report.md").read_text("utf-8") == "ok \\ud83d end"
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text("utf-8").splitlines()]
    assert lines[1]["event"]["delta"]["text"] == "ok \ud83d"
