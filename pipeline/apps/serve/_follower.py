"""A replica's one reader: a single task following every job log its browsers read, never one per browser.

A log is loaded whole (``XRANGE``) when a request first asks for it, then followed by one blocking
read over all followed logs (:class:`~pipeline.apps.scale.protocols.LogTail`), each from its tail; new
entries go into the in-memory :class:`ReplicaLog` and wake its cursors. When no request holds a log
any more it is dropped (a later request loads it again).

Redis can come back without a log's tail (a crash between AOF fsyncs, a failover): the worker then
writes those seqs again under a newer epoch. A read that does not go on from the tail in the same
epoch is checked against Redis: if the tail is still there, it was a takeover; if not, the log is
loaded again and keeps only the prefix Redis still has, so the cursors in the lost tail get
``reset``. After a lost connection every followed tail is checked the same way, since a log whose
rewrite ends below the old tail would otherwise never be read again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from pipeline.apps.scale import LOST, EventLog, LogEntry, LogTail, persist
from pipeline.apps.serve._errors import Busy
from pipeline.apps.serve._replica_log import ReplicaLog

log = logging.getLogger("rillet.serve")

BLOCK_S = 15.0
"""A read waits this long for entries; set changes interrupt it (:meth:`LogTail.interrupt`)."""

COUNT = 256
"""Entries per log per read: one busy log cannot starve the others."""


class LogFollower:
    """Follows up to ``max_logs`` logs; :meth:`run` is the reader task."""

    def __init__(self, events: EventLog, tail: LogTail, max_logs: int) -> None:
        self.events = events
        self.tail = tail
        self.max_logs = max_logs
        self.logs: dict[str, ReplicaLog] = {}
        self.xread_calls = 0
        self.reloads = 0
        self.running = False
        self._loading: dict[str, anyio.Event] = {}
        self._added = anyio.Event()
        self._reading = False
        self._suspect = False

    @asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[ReplicaLog | None]:
        """The job's log, followed while held; None if Redis knows no such job."""
        replica_log = await self._watch(job_id)
        if replica_log is None:
            yield None
            return
        try:
            yield replica_log
        finally:
            replica_log.users -= 1
            if not replica_log.users and self.logs.get(job_id) is replica_log:
                del self.logs[job_id]

    async def catch_up(self, replica_log: ReplicaLog) -> None:
        """Reads what Redis has past the tail now, for a browser that saw more on another replica."""
        entries = await persist(lambda: self.events.range(replica_log.job_id, replica_log.tail_id), "range")
        await persist(lambda: self._deliver(replica_log, entries), "catch up")

    async def run(self) -> None:
        """Reads until cancelled; while Redis is away it backs off and tries again."""
        self.running = True
        try:
            while True:
                while not self.logs:
                    await self._added.wait()
                await persist(self._step, "follow")
        finally:
            self.running = False

    async def _watch(self, job_id: str) -> ReplicaLog | None:
        """The log, its ``users`` counted up before any other task can run (and drop it)."""
        while (loading := self._loading.get(job_id)) is not None:
            await loading.wait()
        if (known := self.logs.get(job_id)) is not None:
            known.users += 1
            return known
        if len(self.logs) >= self.max_logs:
            raise Busy(f"too many streams followed (at most {self.max_logs})")
        done = self._loading[job_id] = anyio.Event()
        try:
            if not await persist(lambda: self.events.status(job_id), "status"):
                return None
            replica_log = ReplicaLog(job_id)
            replica_log.extend(await persist(lambda: self.events.range(job_id), "range"))
            replica_log.users += 1
            self.logs[job_id] = replica_log
        finally:
            del self._loading[job_id]
            done.set()
        self._added.set()
        self._added = anyio.Event()
        if self._reading:  # a read under way follows the old set: make it return
            await persist(self.tail.interrupt, "interrupt")
        return replica_log

    async def _step(self) -> None:
        """One read and what it brings; Redis lost on the way makes every tail suspect."""
        try:
            if self._suspect:
                await self._check_tails()
                self._suspect = False
            self._reading = True
            try:
                after = {job_id: replica_log.tail_id for job_id, replica_log in self.logs.items()}
                self.xread_calls += 1
                found = await self.tail.read(after, COUNT, BLOCK_S)
            finally:
                self._reading = False
            for job_id, entries in found.items():
                replica_log = self.logs.get(job_id)
                if replica_log is not None and entries:
                    await self._deliver(replica_log, entries)
        except LOST:
            self._suspect = True
            raise

    async def _check_tails(self) -> None:
        for replica_log in list(self.logs.values()):
            if replica_log.entries and not await self.events.has(replica_log.job_id, replica_log.tail_id):
                async with replica_log.lock:
                    await self._reload(replica_log)

    async def _deliver(self, replica_log: ReplicaLog, entries: list[LogEntry]) -> None:
        async with replica_log.lock:
            tail = replica_log.tail
            fresh = [entry for entry in entries if (entry.seq, entry.epoch) > tail]
            if not fresh:
                return
            first = fresh[0]
            if replica_log.follows(first):
                replica_log.extend(fresh)
            elif first.seq == tail[0] + 1 and await self.events.has(replica_log.job_id, replica_log.tail_id):
                replica_log.extend(fresh)  # a takeover: the new epoch goes on from our tail
            else:
                await self._reload(replica_log)
                return
            replica_log.wake()

    async def _reload(self, replica_log: ReplicaLog) -> None:
        entries = await self.events.range(replica_log.job_id)
        dropped = replica_log.replace(entries)
        self.reloads += 1
        log.warning(
            "log of job %s: Redis lost %d entries this replica had; their readers get a reset",
            replica_log.job_id,
            dropped,
        )
        replica_log.wake()
