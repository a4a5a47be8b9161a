"""A job's Redis log mirrored in a replica's memory, read by browser cursors like ``rillet serve``'s own.

The entry with seq ``n`` is ``entries[n - 1]`` (a log's seqs run from 1 without a gap: the fenced
append refuses a gap), and a cursor is the ``(seq, epoch)`` of the log id a browser saw last. A
cursor is good while the entry at its seq still has its epoch: when Redis lost a tail and the job's
worker wrote those seqs again under a newer epoch, every cursor from the lost tail stops naming
anything, and its connection gets a ``reset`` with the snapshot, whichever replica it reaches. The
SSE ``id:`` is the log id itself, so any replica can resume any browser.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import anyio

from pipeline.apps.scale import LogEntry, accumulate, fold, parse_frame, to_sse
from pipeline.apps.shared.frame_log import Batch, encode_frame, fill, parse_decimal

LogId = tuple[int, int]
"""``(seq, epoch)``; ``(0, 0)`` is before the first entry."""

START: LogId = (0, 0)


def parse_log_id(raw: str | None) -> LogId | None:
    """``"<seq>-<epoch>"`` as a :data:`LogId`; None when malformed."""
    seq, dash, epoch = (raw or "").strip().partition("-")
    seq_number, epoch_number = parse_decimal(seq), parse_decimal(epoch)
    if not dash or seq_number is None or epoch_number is None:
        return None
    return seq_number, epoch_number


class ReplicaLog:
    """One followed job log; written only by the replica's follower, read by any number of cursors."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.entries: list[LogEntry] = []
        self.frames: list[bytes] = []
        """Each entry's SSE frame, encoded once."""
        self.changed = anyio.Event()
        self.connections = 0
        self.users = 0
        """Requests holding the log: the follower stops following it when none does."""
        self.lock = anyio.Lock()
        """Held while the follower brings the log up to date, so two updates never interleave."""

    @property
    def log(self) -> ReplicaLog:
        """The log an events request reads (:class:`~pipeline.apps.serve._events.Entry`): itself."""
        return self

    @property
    def tail(self) -> LogId:
        last = self.entries[-1] if self.entries else None
        return START if last is None else (last.seq, last.epoch)

    @property
    def tail_id(self) -> str:
        """The newest entry's id, ``0-0`` before the first: where a read of the Redis log goes on."""
        seq, epoch = self.tail
        return f"{seq}-{epoch}"

    @property
    def finished(self) -> bool:
        return bool(self.entries) and self.entries[-1].frame.event == "end"

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def holds(self, cursor: LogId) -> bool:
        """Whether the cursor names an entry of this log (or the start)."""
        seq, epoch = cursor
        return seq == 0 or (seq <= len(self.entries) and self.entries[seq - 1].epoch == epoch)

    def cursor(self, raw: str | None) -> LogId:
        """The log id a browser saw last (malformed: the start); :meth:`read` resets one naming no entry."""
        return parse_log_id(raw) or START

    def read(self, cursor: LogId, max_bytes: int) -> Batch[LogId]:
        out: list[bytes] = []
        reset = not self.holds(cursor)
        if reset:
            # The snapshot is the message as of the tail; an ended log's ``end`` frame still follows.
            seq = len(self.entries) - self.finished
            cursor = (seq, self.entries[seq - 1].epoch) if seq else START
            reset_frame = parse_frame(encode_frame(0, "reset", {"message": self.snapshot()}))
            out.append(to_sse(LogEntry(*cursor, reset_frame)))
        seq = cursor[0]
        taken = fill(out, itertools.islice(self.frames, seq, None), max_bytes)
        if taken:
            last = self.entries[seq + taken - 1]
            cursor = (last.seq, last.epoch)
        return Batch(out, cursor, reset)

    def snapshot(self) -> dict[str, Any]:
        """The message as the log has it (``{}`` before ``message_start``)."""
        return accumulate(self.job_id, fold(self.entries)).snapshot()

    def extend(self, entries: Sequence[LogEntry]) -> None:
        """Appends entries that continue the log (the follower checked that they do)."""
        self.entries += entries
        self.frames += map(to_sse, entries)

    def replace(self, entries: Sequence[LogEntry]) -> int:
        """The log as Redis has it now: keeps the prefix both agree on; how many entries were dropped."""
        kept = 0
        for mine, theirs in zip(self.entries, entries, strict=False):
            if (mine.seq, mine.epoch) != (theirs.seq, theirs.epoch):
                break
            kept += 1
        dropped = len(self.entries) - kept
        del self.entries[kept:]
        del self.frames[kept:]
        self.extend(entries[kept:])
        return dropped

    def follows(self, entry: LogEntry) -> bool:
        """Whether ``entry`` comes right after the tail in the same epoch (nothing to check in Redis)."""
        seq, epoch = self.tail
        return entry.seq == seq + 1 and (seq == 0 or entry.epoch == epoch)
