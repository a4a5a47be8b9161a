"""The web (SSE) sink: each stream's frames, encoded once into an append-only log read through cursors.

A browser may be slow, reconnect or reload, so it gets no queue of its own (docs/architecture.md): the sink
appends every frame, already encoded as SSE bytes, to its stream's :class:`StreamLog`, and each
connection is a cursor (the frame id it saw last) over that log. Replay and live delivery are the
same read, nothing is lost or sent twice, and ``write`` never waits on a reader.

Frames: ``id:`` is the log's own sequence number (1, 2, ...), ``event:`` a name, ``data:`` one line
of JSON, which keeps every character (a raw CR would end the line; JSON escapes CR, LF and NUL).
The API's events keep their names and payloads (``ping`` is dropped; ``error`` becomes
``stream_error``, since ``error`` is EventSource's own event). A resumed attempt's ``message_start``
and its ``content_block_start`` for a block already open become ``rillet.message_start`` and
``rillet.content_block_start``, so an SDK-style frontend does not reset. Consecutive text deltas of
one block within one batch are merged into one frame: the busier the stream, the fewer frames.
rillet's events keep their ``rillet.*`` type names (``gaps`` left out of ``rillet.latency``); the
whole message and per-block results are not re-sent (``GET /api/streams/{id}`` has them).
``StreamEnded`` becomes the final ``end`` frame, which carries data, since an event without data
never reaches a browser.

A log holds at most ``max_bytes`` of frames: past it the oldest are evicted, and a cursor older than
the log gets the accumulated message instead (:meth:`StreamLog.snapshot`), computed here from the
frames' own items so that it matches the log's tail exactly.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar

import anyio

from pipeline.events import CostUpdate, FirstToken, Item, LatencySummary, StreamEnded
from pipeline.stages import StreamContext
from pipeline.stages.accumulate import AccumulateStage

NOT_SENT = frozenset({"ping", "rillet.message", "rillet.block_completed"})
"""Pings are transport noise; the whole message and per-block results would send the text twice."""

RENAMED = {"error": "stream_error", "rillet.end": "end"}
"""``error`` collides with EventSource's own event; ``end`` is the stream's last frame."""

DEFAULT_MAX_BYTES = 16 << 20
"""A 15,000-token report encodes to well under 1 MiB of frames; the bound is for runaway streams."""


def encode_frame(frame_id: int, event: str, data: Any) -> bytes:
    """One SSE frame; JSON keeps CR, LF, NUL, U+2028 and a BOM intact where raw text would not."""
    try:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate from an escaped one in the API's JSON
        body = json.dumps(data, separators=(",", ":")).encode()
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (frame_id, event.encode(), body)


C = TypeVar("C")


class Batch(NamedTuple, Generic[C]):
    """What one read of a log gives a connection: frames to send, and its cursor once they are sent."""

    frames: list[bytes]
    cursor: C
    reset: bool
    """The cursor named no frame the log holds: ``frames`` starts with a ``reset`` carrying the snapshot."""


class FrameLog(Protocol[C]):
    """The reader side of a log, all one browser connection needs: a cursor, frames after it, a wake-up.

    :class:`StreamLog` (cursor: its frame ids) and a serve replica's mirror of a Redis log (cursor:
    the log ids ``<seq>-<epoch>``) both meet it, so one connection loop serves both.
    """

    @property
    def changed(self) -> anyio.Event:
        """Set when the log grows, ends or closes (then replaced)."""
        ...

    @property
    def finished(self) -> bool: ...

    def wake(self) -> None:
        """Wakes every reader waiting on :attr:`changed` (heartbeats and lifetimes need it too)."""
        ...

    def cursor(self, raw: str | None) -> C:
        """The cursor a ``Last-Event-ID`` (or ``?after=``) names; malformed: the start."""
        ...

    def read(self, cursor: C, max_bytes: int) -> Batch[C]:
        """Frames after ``cursor``, stopping once ``max_bytes`` is reached (always at least one)."""
        ...


MAX_DIGITS = 19
"""Any id or size a client may send fits in 19 digits (a signed 64-bit integer); a longer one is
malformed, and is never given to ``int()``, which refuses over 4,300 digits with a ValueError."""


def parse_decimal(raw: str | None) -> int | None:
    """A client's decimal number (cursor, ``Content-Length``); None when malformed or too long."""
    text = (raw or "").strip()
    if not text.isdecimal() or len(text) > MAX_DIGITS:
        return None
    return int(text)


def fill(out: list[bytes], frames: Iterable[bytes], max_bytes: int) -> int:
    """Appends ``frames`` to ``out`` until it holds ``max_bytes``; how many were taken."""
    size = sum(map(len, out))
    taken = 0
    for frame in frames:
        if size >= max_bytes:
            break
        out.append(frame)
        size += len(frame)
        taken += 1
    return taken


def _payload(event: Any) -> dict[str, Any]:
    """The event as the API sent it: unset fields stay out, unknown types keep their fields."""
    dump = getattr(event, "model_dump", None)
    if dump is None:
        return {"type": str(getattr(event, "type", "unknown"))}
    payload: dict[str, Any] = dump(mode="json", exclude_unset=True, by_alias=True, warnings=False)
    return payload


def _text_delta(event: Any) -> str | None:
    if getattr(event, "type", None) == "content_block_delta" and event.delta.type == "text_delta":
        text: str = event.delta.text
        return text
    return None


class StreamLog:
    """One stream's encoded frames; frame ``n`` is ``frames[n - first_id]``.

    Readers call :meth:`after` and, when it returns nothing, wait on :attr:`changed` (replaced at
    every wake-up) until the log grows, ends or closes.
    """

    def __init__(self, stream_id: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.stream_id = stream_id
        self.max_bytes = max_bytes
        self.frames: list[bytes] = []
        self.first_id = 1
        self.size = 0
        self.changed = anyio.Event()
        self.ended: StreamEnded | None = None
        self.closed = False
        self.cost: CostUpdate | None = None
        self.ttft: float | None = None
        self.latency: LatencySummary | None = None
        self._accumulate = AccumulateStage(StreamContext(stream_id, "", {}, time.perf_counter_ns()))
        self._open_blocks: set[int] = set()
        self._pending_index = -1
        self._pending: list[str] = []

    @property
    def last_id(self) -> int:
        """The id of the newest frame; 0 before the first."""
        return self.first_id + len(self.frames) - 1

    @property
    def finished(self) -> bool:
        """Nothing more will be appended: the stream ended, or the sink closed."""
        return self.ended is not None or self.closed

    def after(self, cursor: int) -> tuple[bool, list[bytes]]:
        """The frames after frame ``cursor``, and whether frames between the cursor and them were evicted."""
        start = cursor + 1 - self.first_id
        if start < 0:
            return True, list(self.frames)
        return False, self.frames[start:]

    def cursor(self, raw: str | None) -> int:
        """A frame id; anything malformed or beyond the log means from the start."""
        cursor = parse_decimal(raw)
        return cursor if cursor is not None and cursor <= self.last_id else 0

    def read(self, cursor: int, max_bytes: int) -> Batch[int]:
        """See :class:`FrameLog`; a cursor older than the log gets the snapshot as of its tail."""
        evicted, frames = self.after(cursor)
        out: list[bytes] = []
        if evicted:
            # The snapshot is the message as of the tail; an ended log's ``end`` frame still follows.
            cursor = self.last_id - (self.ended is not None)
            out.append(encode_frame(cursor, "reset", {"message": self.snapshot()}))
            _, frames = self.after(cursor)
        return Batch(out, cursor + fill(out, frames, max_bytes), evicted)

    def text(self) -> str:
        """The text of all text blocks so far, as the log's frames carry it."""
        return self._accumulate.text()

    def snapshot(self) -> dict[str, Any]:
        """The accumulated message as of :attr:`last_id` (``{}`` before ``message_start``)."""
        return self._accumulate.snapshot()

    def add(self, item: Item) -> None:
        """Appends the item's frame (or grows the pending text frame); readers are woken by :meth:`wake`."""
        self._accumulate.process(item)
        event = item.event
        text = _text_delta(event)
        if text is not None and event.index == self._pending_index:
            self._pending.append(text)
            return
        self.flush()
        if text is not None:
            self._pending_index, self._pending = event.index, [text]
            return
        named = self._name(item)
        if named is not None:
            self._append(*named)
        if isinstance(event, StreamEnded):
            self.ended = event

    def flush(self) -> None:
        """Turns the pending text into one ``content_block_delta`` frame."""
        if self._pending:
            text = "".join(self._pending)
            delta = {"type": "text_delta", "text": text}
            self._append(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._pending_index, "delta": delta},
            )
            self._pending_index, self._pending = -1, []

    def wake(self) -> None:
        """Wakes every reader waiting for this log to change."""
        self.changed.set()
        self.changed = anyio.Event()

    def close(self) -> None:
        """No more frames will come (the sink closed): readers finish what is there and leave."""
        self.flush()
        self.closed = True
        self.wake()

    def _append(self, name: str, data: Any) -> None:
        frame = encode_frame(self.first_id + len(self.frames), name, data)
        self.frames.append(frame)
        self.size += len(frame)
        if self.size > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        drop = 0
        while self.size > self.max_bytes and drop < len(self.frames) - 1:
            self.size -= len(self.frames[drop])
            drop += 1
        del self.frames[:drop]
        self.first_id += drop

    def _name(self, item: Item) -> tuple[str, Any] | None:
        event = item.event
        kind = str(getattr(event, "type", "unknown"))
        if kind in NOT_SENT:
            return None
        if dataclasses.is_dataclass(event) and not isinstance(event, type):
            return self._rillet(kind, event)
        payload = _payload(event)
        if kind == "message_start" and item.attempt > 1:
            return "rillet.message_start", payload
        if kind == "content_block_start":
            if event.index in self._open_blocks:
                return "rillet.content_block_start", payload
            self._open_blocks.add(event.index)
        elif kind == "content_block_stop":
            self._open_blocks.discard(event.index)
        return RENAMED.get(kind, kind), payload

    def _rillet(self, kind: str, event: Any) -> tuple[str, Any]:
        data = dataclasses.asdict(event)
        if isinstance(event, CostUpdate):
            self.cost = event
        elif isinstance(event, FirstToken) and event.kind == "delta":
            self.ttft = event.seconds
        elif isinstance(event, LatencySummary):
            self.latency = event
            del data["gaps"]
        elif isinstance(event, StreamEnded):
            data |= self.summary()
        return RENAMED.get(kind, kind), data

    def summary(self) -> dict[str, Any]:
        """Usage, cost and timings as far as the frames tell them, for the ``end`` frame and the status."""
        usage = self.snapshot().get("usage")
        cost = self.cost
        latency = self.latency
        return {
            "usage": usage,
            "cost_usd": cost.usd if cost is not None else None,
            "cost_estimated": cost.estimated if cost is not None else None,
            "ttft_s": self.ttft,
            "end_to_end_s": latency.end_to_end if latency is not None else None,
            "tokens_per_s": _rate(latency),
        }


def _rate(latency: LatencySummary | None) -> float | None:
    if latency is None or latency.to_first_delta is None or latency.output_tokens < 2:
        return None
    seconds = latency.end_to_end - latency.to_first_delta
    return latency.output_tokens / seconds if seconds > 0 else None


class SseLogSink:
    """Keeps a :class:`StreamLog` per stream for browsers to read; see the module docstring.

    The server opens a stream's log before the stream runs (:meth:`open_log`) and discards it when
    it expires (:meth:`discard`); an item of a stream nobody opened gets a log too. ``write`` only
    appends to memory, so the fan-out's ``block`` policy costs the pipeline nothing.
    """

    def __init__(self, name: str = "sse", *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self.logs: dict[str, StreamLog] = {}
        self._closed = False

    def open_log(self, stream_id: str) -> StreamLog:
        """The stream's log, made empty if new."""
        log = self.logs.get(stream_id)
        if log is None:
            log = self.logs[stream_id] = StreamLog(stream_id, self.max_bytes)
            if self._closed:
                log.close()
        return log

    def discard(self, stream_id: str) -> None:
        """Forgets the log; readers still holding it finish what it has."""
        log = self.logs.pop(stream_id, None)
        if log is not None and not log.finished:
            log.close()

    async def write(self, batch: Sequence[Item]) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        touched: dict[str, StreamLog] = {}
        for item in batch:
            log = touched.get(item.stream_id)
            if log is None:
                log = touched[item.stream_id] = self.open_log(item.stream_id)
            log.add(item)
        for log in touched.values():
            log.flush()
            log.wake()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        for log in self.logs.values():
            if not log.finished:
                log.close()
