"""The stdout sink: the answer alone on stdout, what happens on stderr when verbose, a closed pipe."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TextIO

import anyio
import pytest

from pipeline.errors import SinkError
from pipeline.events import (
    AttemptStarted,
    CostUpdate,
    FirstToken,
    Item,
    LatencySummary,
    RepetitionDetected,
    ResponseHeaders,
    StreamEnded,
    Usage,
)
from sinks.stdout import StdoutSink
from tests.sinks.conformance import FIXTURES, recorded_items, sample_items

RECORDINGS = sorted(path.name for path in FIXTURES.glob("sdk-*.sse"))


class CountingIO(io.StringIO):
    """A captured stream that counts its flushes: one per batch is the contract, not one per item."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def run(sink: StdoutSink, *batches: Sequence[Item]) -> None:
    async with sink:
        for batch in batches:
            await sink.write(batch)


def expected_text(name: str) -> str:
    message = json.loads((FIXTURES / "expected" / name.replace(".sse", ".json")).read_text("utf-8"))
    return "".join(block["text"] for block in message["content"] if block["type"] == "text")


@pytest.mark.anyio
@pytest.mark.parametrize("name", RECORDINGS)
async def test_stdout_carries_the_answer_alone(name: str) -> None:
    """Non-verbose, stdout gets the text (no thinking) with a final newline, and stderr nothing."""
    out, err = io.StringIO(), io.StringIO()
    await run(StdoutSink(stream=out, err=err), recorded_items(name))
    text = expected_text(name)
    assert out.getvalue() == (text + "\n" if text and not text.endswith("\n") else text)
    assert err.getvalue() == ""


@pytest.mark.anyio
async def test_one_flush_per_batch() -> None:
    """A batch of 300 deltas is written and flushed once."""
    out = CountingIO()
    items = sample_items("s1", text=[f"{n} " for n in range(300)])
    sink = StdoutSink(stream=out, err=io.StringIO())
    async with sink:
        await sink.write(items[:-1])
        assert out.flushes == 1
        assert out.getvalue() == "".join(f"{n} " for n in range(300))


@pytest.mark.anyio
async def test_verbose_reports_rillet_events_on_stderr() -> None:
    """Verbose adds one stderr line per rillet event, estimated costs at most once a second."""
    usage = Usage(input_tokens=10, output_tokens=20)
    second = 1_000_000_000

    def cost(at: int, estimated: bool = True) -> Item:
        return Item("s1", CostUpdate(0.012345, estimated, "claude-opus-4-5", usage, 1), at)

    text = sample_items("s1", text=("Hi",))
    items = [
        Item("s1", AttemptStarted(1, "initial", ""), 0),
        Item("s1", ResponseHeaders(1, "req_1", 200), 1),
        Item("s1", FirstToken("text", 0.4321), 2),
        *text[:-1],
        cost(second),
        cost(second + 1),
        cost(2 * second),
        Item("s1", RepetitionDetected(40, 5, 200, "warn", "ab"), 3),
        cost(2 * second + 5, estimated=False),
        Item("s1", LatencySummary(0.1, 0.2, 0.3, 0.4321, None, 2.5, 0.01, (), 20), 4),
        Item("s1", StreamEnded("completed", "end_turn"), 5),
    ]
    out, err = io.StringIO(), io.StringIO()
    await run(StdoutSink(verbose=True, stream=out, err=err), items)
    assert out.getvalue() == "Hi\n"
    assert err.getvalue().splitlines() == [
        "[s1] attempt 1 (initial)",
        "[s1] HTTP 200, request id req_1",
        "[s1] first text after 0.432 s",
        "[s1] cost $0.0123 (estimated): 10 in, 20 out tokens",
        "[s1] cost $0.0123 (estimated): 10 in, 20 out tokens",
        "[s1] repetition: a 40-character passage 5 times (warn)",
        "[s1] cost $0.0123: 10 in, 20 out tokens",
        "[s1] first text 0.432 s, end to end 2.500 s, 20 output tokens",
        "[s1] ended: completed (stop_reason end_turn)",
    ]


@pytest.mark.anyio
async def test_verbose_keeps_order_between_stdout_and_stderr() -> None:
    """Within a batch, stderr lines and stdout text are flushed in the order they came."""
    shared = CountingIO()
    items = sample_items("s1", text=("one", "two"))
    items.insert(1, Item("s1", FirstToken("text", 0.5), 0))
    await run(StdoutSink(verbose=True, stream=shared, err=shared), items)
    assert shared.getvalue().splitlines() == [
        "[s1] first text after 0.500 s",
        "onetwo",
        "[s1] ended: completed (stop_reason end_turn)",
    ]


@pytest.mark.anyio
async def test_only_the_first_stream_is_shown() -> None:
    """A second stream's text would interleave: it is left out, and one notice says so."""
    out, err = io.StringIO(), io.StringIO()
    s1, s2, s3 = (sample_items(name, text=(name,)) for name in ("s1", "s2", "s3"))
    await run(StdoutSink(stream=out, err=err), [*s1[:-1], *s2, *s3, s1[-1]])
    assert out.getvalue() == "s1\n"
    assert err.getvalue() == "rillet: stdout shows stream 's1' only; 's2' and any others are not printed\n"


@pytest.mark.anyio
async def test_no_extra_newline_after_one() -> None:
    """Text that already ends its line gets no second newline."""
    out = io.StringIO()
    await run(StdoutSink(stream=out, err=io.StringIO()), sample_items("s1", text=("done\n",)))
    assert out.getvalue() == "done\n"


@pytest.mark.anyio
async def test_a_closed_pipe_raises_a_chained_sink_error(broken_pipe: TextIO) -> None:
    """A reader that went away (``| head``) gives a SinkError chained to BrokenPipeError, then a dead sink."""
    sink = StdoutSink(stream=broken_pipe, err=io.StringIO())
    async with sink:
        with pytest.raises(SinkError, match="broken pipe") as caught:
            await sink.write(sample_items("s1"))
        assert isinstance(caught.value.__cause__, BrokenPipeError)
        with pytest.raises(anyio.BrokenResourceError):
            await sink.write(sample_items("s1"))


@pytest.mark.anyio
async def test_a_stream_closed_under_the_sink_is_an_error() -> None:
    """A stream closed by someone else is a chained SinkError too, not a ValueError traceback."""
    out = io.StringIO()
    out.close()
    with pytest.raises(SinkError, match="cannot write to stdout") as caught:
        await run(StdoutSink(stream=out, err=io.StringIO()), sample_items("s1"))
    assert isinstance(caught.value.__cause__, ValueError)
