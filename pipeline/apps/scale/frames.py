"""Items to log frames and back: the same frames a local browser log serves, stored once in Redis.

Encoding reuses :class:`~pipeline.apps.shared.frame_log.StreamLog` (its event names, its merging of
text deltas), so a replica serving from Redis sends exactly what ``rillet serve`` sends from memory;
only the ``id`` differs (``<seq>-<epoch>``). Decoding turns a log back into the SDK events it came
from, so a new owner can rebuild the partial report through the accumulate stage and resume it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter, ValidationError

from pipeline.apps.scale.protocols import Frame, LogEntry
from pipeline.apps.shared.frame_log import StreamLog
from pipeline.events import Item, Outcome, StreamEnded
from pipeline.stages import StreamContext
from pipeline.stages.accumulate import AccumulateStage

_UNBOUNDED = 1 << 62
"""The encoder's log is emptied at every take: its byte bound must never evict."""

_SDK = TypeAdapter[Any](RawMessageStreamEvent)

REPLAYED = frozenset(
    {
        "message_start",
        "rillet.message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)
"""Frames that carry the message: what a new owner feeds back through the stages."""


class FrameEncoder:
    """Collects a stream's items and hands out the frames they make, in order."""

    def __init__(self, stream_id: str) -> None:
        self._log = StreamLog(stream_id, _UNBOUNDED)

    def add(self, item: Item) -> None:
        self._log.add(item)

    def take(self) -> list[Frame]:
        """The frames made since the last take (pending text included)."""
        log = self._log
        log.flush()
        frames = [parse_frame(raw) for raw in log.frames]
        log.first_id += len(log.frames)
        log.frames.clear()
        log.size = 0
        return frames

    def snapshot(self) -> dict[str, Any]:
        return self._log.snapshot()


def parse_frame(raw: bytes) -> Frame:
    """``id: N\\nevent: E\\ndata: D\\n\\n`` back into its event name and data."""
    _, event, data = raw.split(b"\n", 2)
    return Frame(event[len(b"event: ") :].decode(), data[len(b"data: ") : -2])


def to_sse(entry: LogEntry) -> bytes:
    """The SSE frame a browser gets for a stored entry: its id is the log id."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        entry.id.encode(),
        entry.frame.event.encode(),
        entry.frame.data,
    )


def end_frame(outcome: Outcome, error: str | None, error_type: str | None) -> Frame:
    """The ``end`` frame of a job that ends without a run (cancelled while queued, dead-lettered).

    Encoded as a run's own ``end`` is, so a page reads ``error`` and finds the figures (all empty).
    """
    log = StreamLog("", _UNBOUNDED)
    log.add(Item("", StreamEnded(outcome, None, error, error_type), 0))
    return parse_frame(log.frames[-1])


@dataclass(slots=True)
class Replay:
    """What a job's log says happened: the message events by attempt, and whether it ended."""

    events: list[tuple[int, Any]] = field(default_factory=list)
    ended: bool = False
    last_seq: int = 0


def fold(entries: list[LogEntry]) -> Replay:
    """The SDK events a log holds, each with the attempt that produced it."""
    replay = Replay()
    attempt = 1
    for entry in entries:
        replay.last_seq = entry.seq
        name = entry.frame.event
        if name == "rillet.attempt":
            attempt = int(json.loads(entry.frame.data)["attempt"])
        elif name == "end":
            replay.ended = True
        elif name in REPLAYED and name != "rillet.content_block_start":
            try:
                replay.events.append((attempt, _SDK.validate_json(entry.frame.data)))
            except ValidationError:
                continue
    return replay


def accumulate(stream_id: str, replay: Replay) -> AccumulateStage:
    """The accumulate stage after the log's events: the report as far as the log has it."""
    stage = AccumulateStage(StreamContext(stream_id, "", {}, 0))
    for attempt, event in replay.events:
        stage.process(Item(stream_id, event, 0, attempt))
    return stage
