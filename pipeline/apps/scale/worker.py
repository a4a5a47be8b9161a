"""``rillet worker``: takes report jobs from the queue, streams them into their logs, finishes them.

One claimer task asks the queue for as many jobs as there are free slots, never more: first the
jobs whose lease lapsed (their worker died or stalled, ``XAUTOCLAIM``), then new ones. Each job:

1. is *taken*: its epoch goes up, which fences whoever had it before;
2. has its log read and folded (:func:`~pipeline.apps.scale.frames.fold`); a job the log shows ended
   is only acknowledged, a job taken too often goes to the dead-letter stream;
3. runs through the configured stages into a :class:`~pipeline.apps.scale.log_sink.RedisLogSink`, from the
   log's end when it was begun before (``Source(history=...)``), while a
   heartbeat renews its lease every third of it; a refused renewal or append means the job was
   taken over: the upstream response is closed at once and the job left to its new owner;
4. has its report written from the log by the file sink (``<id>.md.part``, flushed, renamed to
   ``<id>.md``; marked incomplete exactly as ``rillet run`` marks it), then is finished (the
   ``end`` frame, the outcome, the finished TTL) and acknowledged. A failed run, or a report that
   cannot be written, gives the job back to the queue until it has used its attempts; then it is
   dead-lettered with the reason, its log and any partial report (marked) kept.

A cancel request (``POST /api/streams/{id}/cancel`` on a replica, ``rillet jobs ID --cancel``) is
recorded in the job's hash and announced on the prefix's cancel channel, to which each worker
process holds one subscription. The worker running the job cancels its run the way ``rillet
serve`` does (the upstream response closed at once, the text kept, outcome ``cancelled``) and
finishes it with status ``cancelled``, report written, acknowledged. A worker that missed the
announcement still finds the record: when it takes the job (which then ends without a request),
at every renewal, and each time its subscription is made again.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import anyio
from anthropic import AsyncAnthropic
from anthropic.types import RawContentBlockDeltaEvent, TextDelta

from pipeline.apps.scale._retry import persist
from pipeline.apps.scale.checks import job_id_problem
from pipeline.apps.scale.frames import accumulate, end_frame, fold
from pipeline.apps.scale.log_sink import RedisLogSink
from pipeline.apps.scale.metrics import ScaleMetrics
from pipeline.apps.scale.protocols import (
    CancelSignals,
    EventLog,
    JobQueue,
    Lease,
    LogEntry,
    LogFull,
    Lost,
    Malformed,
    Take,
)
from pipeline.apps.scale.settings import RedisConfig
from pipeline.errors import SinkError
from pipeline.events import Item, StreamEnded
from pipeline.fanout import FanOut
from pipeline.runner import StreamResult, StreamRun
from pipeline.sink import Buffer, OnError, SinkSpec
from pipeline.source.resume import ResumeSettings
from pipeline.source.stream import Source
from pipeline.stages import StageFactory
from sinks.file import FileSink
from sinks.shared import SharedSinks

log = logging.getLogger("rillet.scale")

PRUNE_LEASES = 10
"""A consumer idle this many leases with nothing leased is a dead process: the janitor forgets it."""

ENDS = {"completed": "done", "cancelled": "cancelled"}
"""Run outcomes that end a job (no retry), and the job status each gives."""

FLUSH_TIMEOUT = 3600.0
"""A job's last frames wait this long for Redis to come back: the log must not lose them."""


def consumer_name() -> str:
    """Unique per process: a restarted worker must not inherit a dead one's pending entries."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSettings:
    concurrency: int = 4
    consumer: str = dataclasses.field(default_factory=consumer_name)
    out_dir: Path | None = None
    """Where each finished report is written, as ``<job id>.md``."""
    resume: ResumeSettings = dataclasses.field(default_factory=ResumeSettings)


class Worker:
    """Runs jobs from ``queue`` into ``events`` until cancelled."""

    def __init__(
        self,
        queue: JobQueue,
        events: EventLog,
        cancels: CancelSignals,
        client: AsyncAnthropic,
        stages: Sequence[StageFactory],
        redis: RedisConfig,
        settings: WorkerSettings,
        metrics: ScaleMetrics,
        shared: SharedSinks | None = None,
    ) -> None:
        self.queue = queue
        self.events = events
        self.cancels = cancels
        self.client = client
        self.stages = tuple(stages)
        self.redis = redis
        self.settings = settings
        self.metrics = metrics
        self.shared = shared
        """The process's shared sinks (metrics), lent to each job's fan-out beside its log."""
        self.running = 0
        self._freed = anyio.Event()
        self._jobs: dict[str, _Running] = {}

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            listen = functools.partial(self.cancels.listen, self._cancel, self._check_cancels)
            tg.start_soon(persist, listen, "cancel signals")
            await self._claim(tg)

    def _cancel(self, job_id: str, reason: str) -> None:
        """A cancel request was announced: ends the run if this process has the job."""
        running = self._jobs.get(job_id)
        if running is not None:
            running.cancel(reason)

    async def _check_cancels(self) -> None:
        """Listening (re)started: requests announced while it was not are read from the jobs' records."""
        for job_id, running in list(self._jobs.items()):
            reason = await persist(functools.partial(self.events.cancel_requested, job_id), "cancel check")
            if reason is not None:
                running.cancel(reason)

    async def _claim(self, tg: anyio.abc.TaskGroup) -> None:
        """Never holds more leases than free slots (the rest stay in the queue for other workers)."""
        concurrency, consumer = self.settings.concurrency, self.settings.consumer
        lease_s = self.redis.lease_seconds
        every = lease_s / 4
        next_reclaim = next_prune = 0.0
        while True:
            while self.running >= concurrency:
                await self._freed.wait()
            free = concurrency - self.running
            leases: list[Lease] = []
            now = anyio.current_time()
            if now >= next_reclaim:
                leases += await persist(
                    functools.partial(self.queue.reclaim, consumer, lease_s, free), "reclaim"
                )
                next_reclaim = now + every
            if now >= next_prune:
                await persist(functools.partial(self.queue.prune, lease_s * PRUNE_LEASES), "prune")
                next_prune = now + lease_s
            if len(leases) < free:
                wait = 0.0 if leases else every
                more = free - len(leases)
                leases += await persist(functools.partial(self.queue.lease, consumer, more, wait), "lease")
            for lease in leases:
                self.running += 1
                self.metrics.running.inc()
                tg.start_soon(self._job, lease)

    async def _job(self, lease: Lease) -> None:
        running = self._jobs[lease.job_id] = _Running()
        try:
            if (problem := lease.problem or job_id_problem(lease.job_id)) is not None:
                await self._refuse(lease, problem)
            else:
                await self._take(lease, running)
        except Exception:
            log.exception(
                "job %s failed in the worker; its lease will lapse and another worker retry it", lease.job_id
            )
        finally:
            if self._jobs.get(lease.job_id) is running:
                del self._jobs[lease.job_id]
            self.running -= 1
            self.metrics.running.dec()
            self._freed.set()
            self._freed = anyio.Event()

    async def _take(self, lease: Lease, running: _Running) -> None:
        """Takes the job; takes it again, past the epoch it had, while Redis loses what this take wrote."""
        after = 0
        while after := await self._run(lease, after, running):
            self.metrics.lost.inc()
            if not await persist(lambda: self.queue.renew(self.settings.consumer, lease), "renew"):
                log.warning(
                    "job %s: its lease was lost with the writes; the queue delivers it again", lease.job_id
                )
                return

    async def _run(self, lease: Lease, after: int, running: _Running) -> int:
        """Runs the job to its end; 0, or the epoch it ran under when Redis lost its latest writes."""
        job_id = lease.job_id
        try:
            take = await persist(lambda: self.events.take(job_id, self.settings.consumer, after), "take")
        except Malformed as exc:  # nothing was changed: the record cannot even be fenced
            await self._refuse(lease, f"job {job_id}'s record is malformed: {exc}")
            return 0
        if take.status != "running":  # done, dead, or expired: a redelivery of something settled
            await persist(lambda: self.queue.ack(lease), "ack")
            return 0
        if lease.reclaimed and not after:
            self.metrics.reclaims.inc()
        if take.cancel is not None:
            running.cancel(take.cancel)
        try:
            if take.problem is not None:
                raise Malformed(take.problem)
            await self._resume(lease, take, running)
        except Lost as exc:
            log.warning("job %s: %s; taking it again from what the log kept", job_id, exc)
            return take.epoch
        except Malformed as exc:
            await self._dead(lease, take, f"the job's record is malformed: {exc}", None)
        except Exception as exc:  # whatever else a job's data makes fail: recorded, so retries are counted
            log.exception("job %s failed in the worker", job_id)
            await self._retry(lease, take, f"the worker failed: {type(exc).__name__}: {exc}", None, None)
        return 0

    async def _resume(self, lease: Lease, take: Take, running: _Running) -> None:
        """Runs the job from where its log ends (the start, for a new one)."""
        job_id = lease.job_id
        if take.attempts > self.redis.max_attempts and take.cancel is None:
            status = await persist(lambda: self.events.status(job_id), "status")
            last = status.get("error") or "the worker died"
            reason = f"taken {take.attempts - 1} times without finishing; last error: {last}"
            await self._dead(lease, take, reason, None)
            return
        entries = await persist(lambda: self.events.range(job_id), "range")
        replay = fold(entries)
        if replay.ended:
            await persist(lambda: self.queue.ack(lease), "ack")
            return
        source = Source(self.client, take.request, job_id, resume=self.settings.resume, history=replay.events)
        sink = RedisLogSink(
            self.events,
            job_id,
            take.epoch,
            next_seq=max(take.last_seq, replay.last_seq) + 1,
            # The source numbers its next attempt after the last one the log holds events of; an
            # attempt logged without any (its worker died first) is numbered again, and written.
            live_from=source.attempts + 1,
            linger=self.redis.flush_ms / 1000,
            observe=self.metrics.observe_append,
        )
        await self._stream(lease, take, source, sink, running)

    async def _stream(
        self, lease: Lease, take: Take, source: Source, sink: RedisLogSink, running: _Running
    ) -> None:
        """Runs the job; one cancelled before it started runs no request and ends at once."""
        stream = StreamRun(take.request, self.stages, lease.job_id)
        running.start(stream)
        lent = self.shared.lend() if self.shared is not None else []
        fanout = FanOut([SinkSpec(sink, Buffer(1024), OnError.FAIL), *lent], flush_timeout=FLUSH_TIMEOUT)
        result: StreamResult | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._renew, lease, running)
            try:
                async with fanout:
                    traced = self.shared.trace_stream if self.shared is not None else _untraced
                    with traced(stream.stream_id, take.request):
                        result = await stream.run(source, fanout)
            except SinkError:
                pass  # the result already says so; a fenced sink is handled below
            finally:
                if self.shared is not None:
                    self.shared.returned(fanout.statistics)
            tg.cancel_scope.cancel()
        if sink.lost is not None:
            raise sink.lost
        if sink.fenced or running.fenced:
            self.metrics.fenced.inc()
            log.warning(
                "job %s was taken over (epoch %d is stale): stopped and wrote nothing more",
                lease.job_id,
                take.epoch,
            )
            return
        assert result is not None
        if result.outcome in ENDS:
            await self._end(lease, take, result, sink)
        elif isinstance(result.failure, SinkError) and isinstance(result.failure.__cause__, LogFull):
            await self._dead(lease, take, str(result.failure.__cause__), sink.end_entry(), result)
        else:
            await self._retry(lease, take, f"{result.outcome}: {result.error}", sink.end_entry(), result)

    async def _retry(
        self, lease: Lease, take: Take, reason: str, end: LogEntry | None, result: StreamResult | None
    ) -> None:
        """Back to the queue for another take, or dead-lettered once it had ``max_attempts``."""
        if take.attempts >= self.redis.max_attempts:
            await self._dead(lease, take, reason, end, result)
            return
        await persist(lambda: self.events.release(lease.job_id, take.epoch, reason), "release")
        await persist(lambda: self.queue.requeue(lease), "requeue")
        self.metrics.jobs.labels("retried").inc()

    async def _renew(self, lease: Lease, running: _Running) -> None:
        """Every third of the lease: renews it, and reads the job's cancel record (in case the
        announcement was missed)."""
        while True:
            await anyio.sleep(self.redis.lease_seconds / 3)
            if not await persist(lambda: self.queue.renew(self.settings.consumer, lease), "renew"):
                running.fence()
                return
            reason = await persist(lambda: self.events.cancel_requested(lease.job_id), "cancel check")
            if reason is not None:
                running.cancel(reason)

    async def _end(self, lease: Lease, take: Take, result: StreamResult, sink: RedisLogSink) -> None:
        """A completed or cancelled run: its report (the text so far, if cancelled), its end, its ack.

        The report is on disk before the job is finished: a report that cannot be written sends the
        job back for another take (which replays the log and asks the model nothing), and after
        ``max_attempts`` to the dead-letter stream with the reason, its log kept.
        """
        end = sink.end_entry()
        assert end is not None, "the runner ends every stream with StreamEnded"
        try:
            await self._write_report(lease.job_id, result)
        except SinkError as exc:
            await self._retry(lease, take, f"cannot write the report: {exc}", None, result)
            return
        fields = _outcome_fields(result)
        status = ENDS[result.outcome]
        await persist(lambda: self.events.finish(lease.job_id, take.epoch, end, status, fields), "finish")
        self.metrics.appends.inc()
        await persist(lambda: self.queue.ack(lease), "ack")
        self.metrics.jobs.labels(status).inc()

    async def _dead(
        self,
        lease: Lease,
        take: Take,
        reason: str,
        end: LogEntry | None,
        result: StreamResult | None = None,
    ) -> None:
        """Dead-lettered with ``reason``; the log is kept, and so is the report of a run (marked)."""
        if result is not None and result.outcome not in ENDS:
            try:
                await self._write_report(lease.job_id, result)
            except SinkError as exc:
                log.warning("job %s: %s", lease.job_id, exc)
        if end is None:
            last = await persist(lambda: self.events.status(lease.job_id), "status")
            end = LogEntry(
                int(last.get("last_seq", 0)) + 1, take.epoch, end_frame("error", reason, "dead_letter")
            )
        fields = {"error": reason}
        await persist(lambda: self.events.finish(lease.job_id, take.epoch, end, "dead", fields), "finish")
        self.metrics.appends.inc()
        await persist(lambda: self.queue.dead_letter(lease, reason), "dead letter")
        self.metrics.jobs.labels("dead").inc()
        log.warning("job %s went to the dead-letter stream: %s", lease.job_id, reason)

    async def _refuse(self, lease: Lease, reason: str) -> None:
        """A queue entry no job can be built from: dead-lettered as it is, nothing else touched."""
        await persist(lambda: self.queue.dead_letter(lease, reason), "dead letter")
        self.metrics.jobs.labels("dead").inc()
        log.warning("queue entry %s went to the dead-letter stream: %s", lease.entry, reason)

    async def _write_report(self, job_id: str, result: StreamResult) -> None:
        """The report from the log, written once by the file sink: flushed, renamed into place, and
        marked when incomplete exactly as ``rillet run`` marks it. Never incremental from two workers."""
        if self.settings.out_dir is None:
            return
        entries = await persist(lambda: self.events.range(job_id), "range")
        text = accumulate(job_id, fold(entries)).text()
        delta = RawContentBlockDeltaEvent(
            type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text=text)
        )
        ended = StreamEnded(result.outcome, result.stop_reason, result.error, result.error_type)
        async with FileSink(self.settings.out_dir / f"{job_id}.md", name="report") as sink:
            await sink.write([Item(job_id, delta, 0), Item(job_id, ended, 0)])


@dataclasses.dataclass(slots=True)
class _Running:
    """A job this process runs: its stream once started, and what stopped it (a request comes in
    from the cancel listener or the renewal at any moment, even before the stream exists)."""

    stream: StreamRun | None = None
    cancelled: str | None = None
    fenced: bool = False

    def start(self, stream: StreamRun) -> None:
        self.stream = stream
        if self.cancelled is not None:
            stream.cancel(self.cancelled)

    def cancel(self, reason: str) -> None:
        if self.cancelled is None:
            self.cancelled = reason
            if self.stream is not None:
                self.stream.cancel(reason)

    def fence(self) -> None:
        self.fenced = True
        if self.stream is not None:
            self.stream.cancel("the job was taken over by another worker")


def _outcome_fields(result: StreamResult) -> dict[str, str]:
    usage: dict[str, Any] = (result.message or {}).get("usage") or {}
    fields = {
        "outcome": result.outcome,
        "stop_reason": result.stop_reason or "",
        "output_tokens": str(usage.get("output_tokens", "")),
        "input_tokens": str(usage.get("input_tokens", "")),
        "error": "",
    }
    if result.cost is not None:
        fields["cost_usd"] = repr(result.cost.usd)
    return fields


def _untraced(stream_id: str, request: dict[str, Any]) -> AbstractContextManager[None]:
    """A worker without shared sinks traces nothing."""
    return nullcontext()
