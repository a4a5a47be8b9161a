"""Long text kept compactly: the buffer reads back exactly, and a stream's holders keep about its text.

Issue 19: a 200k-delta stream grew by 137 B per delta, because the accumulator and the stitcher's
transcript each kept every delta's string object. The memory checks count bytes with
``tracemalloc`` (exact, not timed) over deltas of 8 characters each, which a list of strings would
keep in about 72 bytes.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageStartEvent,
    TextBlock,
    TextDelta,
    Usage,
)
from hypothesis import given
from hypothesis import strategies as st

from pipeline._text_buffer import JOIN_EVERY, TextBuffer
from pipeline.events import Item
from pipeline.source._stitch import Stitcher
from pipeline.stages import StreamContext
from pipeline.stages.accumulate import AccumulateStage

DELTAS = 20_000
WORD = 8


@given(st.lists(st.one_of(st.text(max_size=5), st.none()), max_size=4 * JOIN_EVERY))
def test_reads_back_what_was_appended_whenever_read(steps: list[str | None]) -> None:
    """Appends (strings) and reads (None) in any order: every read is the concatenation so far."""
    buffer, appended = TextBuffer(), []
    for step in steps:
        if step is None:
            assert buffer.value() == "".join(appended)
        else:
            buffer.append(step)
            appended.append(step)
    assert buffer.value() == "".join(appended)
    assert bool(buffer) == bool(appended)


def test_an_empty_string_counts_as_appended() -> None:
    """A block that starts with ``text: ""`` has its field, one that starts without it has not."""
    buffer = TextBuffer()
    assert not buffer
    buffer.append("")
    assert buffer
    assert buffer.value() == ""


def start() -> RawMessageStartEvent:
    usage = Usage(input_tokens=1, output_tokens=1)
    message = Message(id="m", type="message", role="assistant", model="claude-test", content=[], usage=usage)
    return RawMessageStartEvent(type="message_start", message=message)


def text_start() -> RawContentBlockStartEvent:
    block = TextBlock(type="text", text="")
    return RawContentBlockStartEvent(type="content_block_start", index=0, content_block=block)


def word_delta(number: int) -> RawContentBlockDeltaEvent:
    """A delta of its own 8-character string, as each one parsed off the wire is."""
    text = f"{number:07d} "
    return RawContentBlockDeltaEvent(
        type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text=text)
    )


def bytes_per_delta(feed: Callable[[Any], object]) -> float:
    """What ``feed`` keeps per delta: traced memory after :data:`DELTAS` deltas, less before them."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(DELTAS):
            feed(word_delta(number))
        return (tracemalloc.get_traced_memory()[0] - before) / DELTAS
    finally:
        tracemalloc.stop()


def expected_text() -> str:
    return "".join(f"{number:07d} " for number in range(DELTAS))


def test_the_accumulator_keeps_about_a_byte_per_character() -> None:
    stage = AccumulateStage(StreamContext("s", "claude-test", {}, 0))
    for event in (start(), text_start()):
        stage.process(Item("s", event, 0))
    kept = bytes_per_delta(lambda event: stage.process(Item("s", event, 0)))
    assert kept < WORD * 1.5
    assert stage.snapshot()["content"] == [{"type": "text", "text": expected_text()}]


def test_the_transcript_keeps_about_a_byte_per_character() -> None:
    stitcher = Stitcher(hold_tools=False)
    stitcher.begin(None)
    for event in (start(), text_start()):
        stitcher.feed(event)
    kept = bytes_per_delta(stitcher.feed)
    assert kept < WORD * 1.5
    assert stitcher.transcript.text_blocks() == [expected_text()]
