"""The two things scale-out needs from an engine: a job queue and an event log.

Stages and sinks never see the engine: a worker talks to these Protocols, so another engine (NATS
JetStream: a work-queue stream for jobs, a KV epoch and a subject per log) can implement them
without touching the pipeline. Redis Streams implements both (:mod:`pipeline.apps.scale._redis`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.errors import RilletError


class Fenced(RilletError):
    """The job was taken over (its epoch moved on): this worker must stop and write nothing more."""


class Lost(RilletError):
    """Redis lost the job's latest writes (a crash between AOF fsyncs): this worker is ahead of the log.

    The lost writes are always a suffix (the AOF is replayed in order), so the log still holds a
    consistent prefix; the worker takes the job again under a newer epoch and resumes from it.
    """


class LogFull(RilletError):
    """The job's log would pass its byte cap: the job fails loudly instead of growing without bound."""


class Malformed(RilletError):
    """What Redis holds for a job cannot be a job's (a hand-written entry, a corrupted field): the
    job is dead-lettered with this reason at once, since no retry would read anything else."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A job handed to one consumer: ``entry`` identifies the delivery, ``reclaimed`` a takeover."""

    job_id: str
    entry: str
    reclaimed: bool = False
    problem: str | None = None
    """Why the queue entry names no job (a missing or unreadable ``job`` field): it is dead-lettered."""


@dataclass(frozen=True, slots=True)
class Take:
    """What taking a leased job found: its new epoch, the request, how far its log got, and
    ``cancel``, the reason a cancel was asked for (the job is then ended, not run)."""

    epoch: int
    attempts: int
    request: dict[str, Any]
    last_seq: int
    status: str
    cancel: str | None = None
    problem: str | None = None
    """Why the stored request cannot be sent (not JSON, a field of the wrong type): dead-lettered."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One log entry: an SSE event name and its JSON payload, encoded once."""

    event: str
    data: bytes


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A frame as stored: ``seq`` and ``epoch`` make its id, ``<seq>-<epoch>``."""

    seq: int
    epoch: int
    frame: Frame

    @property
    def id(self) -> str:
        return f"{self.seq}-{self.epoch}"


class JobQueue(Protocol):
    """At-least-once delivery with leases a running job renews."""

    async def submit(self, request: Mapping[str, Any], job_id: str | None = None) -> str: ...

    async def lease(self, consumer: str, count: int, block_s: float) -> list[Lease]:
        """Up to ``count`` new jobs (never more: a worker asks for its free slots only)."""
        ...

    async def reclaim(self, consumer: str, min_idle_s: float, count: int) -> list[Lease]:
        """Up to ``count`` jobs whose lease lapsed ``min_idle_s`` ago (their worker died or stalled)."""
        ...

    async def renew(self, consumer: str, lease: Lease) -> bool:
        """Extends the lease; False when another consumer owns it now (the caller is fenced)."""
        ...

    async def ack(self, lease: Lease) -> None: ...

    async def requeue(self, lease: Lease) -> None:
        """Gives the job back at once (it failed and will be retried by whoever takes it)."""
        ...

    async def dead_letter(self, lease: Lease, reason: str) -> None: ...

    async def prune(self, idle_s: float) -> int:
        """Forgets consumers idle ``idle_s`` with nothing leased (dead worker processes); how many."""
        ...


class EventLog(Protocol):
    """One append-only log per job, with fenced appends."""

    async def take(self, job_id: str, consumer: str, after_epoch: int = 0) -> Take:
        """Bumps the job's epoch past ``after_epoch`` (fencing any previous owner); returns its state."""
        ...

    async def append(self, job_id: str, epoch: int, entries: Sequence[LogEntry], chars: int) -> None:
        """Appends atomically, idempotently; raises :class:`Fenced`, :class:`Lost` or :class:`LogFull`."""
        ...

    async def finish(
        self, job_id: str, epoch: int, end: LogEntry, status: str, fields: Mapping[str, str]
    ) -> None:
        """Appends the ``end`` frame, records the outcome and starts the finished TTL; fenced, like append."""
        ...

    async def release(self, job_id: str, epoch: int, reason: str) -> None:
        """Marks a failed attempt (the job goes back to the queue); fenced."""
        ...

    async def cancel(self, job_id: str, reason: str) -> str:
        """Records a cancel request, idempotently; returns the status it found. ``queued``: the job
        is cancelled now (its ``end`` frame appended); ``running``: its worker is told and ends it;
        ``done``, ``dead``, ``cancelled``: it had ended, nothing changes; ``""``: no such job."""
        ...

    async def cancel_requested(self, job_id: str) -> str | None:
        """The reason of the job's cancel request, if one was recorded."""
        ...

    async def range(self, job_id: str, after: str | None = None) -> list[LogEntry]: ...

    async def has(self, job_id: str, entry_id: str) -> bool:
        """Whether the log holds an entry with this id (a browser's cursor may name a lost one)."""
        ...

    async def status(self, job_id: str) -> dict[str, str]: ...


class CancelSignals(Protocol):
    """Prompt, at-most-once news of cancel requests; :meth:`EventLog.cancel_requested` is the record."""

    async def listen(
        self, cancel: Callable[[str, str], None], subscribed: Callable[[], Awaitable[None]]
    ) -> None:
        """Until cancelled: ``cancel(job_id, reason)`` for each request; ``subscribed()`` each time
        listening (re)starts, since requests made while it was not were missed."""
        ...


class LogTail(Protocol):
    """A blocking read over many logs at once: a serve replica's one reader for every log it follows."""

    async def read(self, after: Mapping[str, str], count: int, block_s: float) -> dict[str, list[LogEntry]]:
        """Entries after each job's id (``0-0``: from the start), up to ``count`` per log; waits up
        to ``block_s`` for some, or until :meth:`interrupt`."""
        ...

    async def interrupt(self) -> None:
        """Makes a read under way (or the next one) return at once: the set of logs changed."""
        ...

    async def close(self) -> None: ...
