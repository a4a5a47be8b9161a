"""``rillet serve --redis URL``: a replica that serves any job's events from its Redis log.

A replica runs no model: ``POST /api/streams`` puts a job in the queue for ``rillet worker``
processes, and ``GET /api/streams/{id}[/events]`` serve any job from its log and status hash,
whoever submitted it. Replicas hold nothing another replica lacks, so a browser whose replica died
reconnects to any other (through the load balancer) with its ``Last-Event-ID``, a log id.
``POST /api/streams/{id}/cancel`` records the request in Redis (:meth:`EventLog.cancel`): a queued
job ends there, a running one's worker is told at once and ends it; the page's ``end`` frame then
comes through the log like any other.
"""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.apps.scale import (
    LOST,
    LogEntry,
    RedisConfig,
    RedisEventLog,
    RedisJobQueue,
    RedisLogTail,
    ReplicaCounts,
    accumulate,
    fold,
    open_redis,
    persist,
)
from pipeline.apps.serve._app import JsonApi, build_app
from pipeline.apps.serve._errors import Busy, refusal
from pipeline.apps.serve._follower import LogFollower
from pipeline.apps.serve._readers import Reader, Readers
from pipeline.apps.serve._render import render_markdown
from pipeline.apps.serve._replica_log import ReplicaLog, parse_log_id
from pipeline.apps.serve._settings import ServeSettings
from pipeline.apps.serve._uvicorn import serving_app

CANCEL_REASON = "stopped from the browser"
"""The reason an in-memory ``rillet serve`` gives too."""


class ReplicaStreams:
    """:class:`~pipeline.apps.serve._events.Streams` over the follower's logs; ``max_streams`` bounds them."""

    def __init__(self, follower: LogFollower, settings: ServeSettings, task_group: TaskGroup) -> None:
        self.follower = follower
        self._readers = Readers(settings, task_group, lambda: follower.logs.values())

    @contextlib.asynccontextmanager
    async def open(self, stream_id: str, last_event_id: str | None) -> AsyncIterator[ReplicaLog | None]:
        if self._readers.closing:
            raise Busy("the server is shutting down")
        async with self.follower.hold(stream_id) as replica_log:
            cursor = parse_log_id(last_event_id)
            if replica_log is not None and cursor is not None and cursor > replica_log.tail:
                await self.follower.catch_up(replica_log)  # it saw more on another replica
            yield replica_log

    def connection(self, entry: ReplicaLog, *, resumed: bool) -> contextlib.AbstractContextManager[Reader]:
        return self._readers.connection(entry, resumed=resumed)

    def counts(self) -> ReplicaCounts:
        tally, follower = self._readers.tally, self.follower
        return ReplicaCounts(
            connections=len(self._readers.active),
            connections_total=tally.connections,
            resets_total=tally.resets,
            followed_logs=len(follower.logs),
            log_readers=int(follower.running),
            xread_calls=follower.xread_calls,
            log_reloads=follower.reloads,
        )

    def close(self) -> None:
        self._readers.close()


class ReplicaApi(JsonApi):
    """Submits jobs to the queue; states come from Redis."""

    def __init__(self, queue: RedisJobQueue, events: RedisEventLog, settings: ServeSettings) -> None:
        super().__init__(settings)
        self.queue = queue
        self.events = events

    async def launch(self, request: dict[str, Any]) -> str:
        try:
            return await self.queue.submit(request)
        except LOST as exc:
            raise Busy(f"Redis is unavailable ({exc}); try again") from None

    async def status(self, request: Request) -> Response:
        job_id = request.path_params["stream_id"]
        fields = await persist(lambda: self.events.status(job_id), "status")
        if not fields:
            return refusal(404, "no such stream (it may have expired)")
        entries = await persist(lambda: self.events.range(job_id), "range")
        return JSONResponse(job_state(job_id, fields, entries))

    async def cancel(self, request: Request) -> Response:
        """202 as ``rillet serve`` answers: ``running`` until the worker has ended the job, else ``ended``."""
        job_id = request.path_params["stream_id"]
        found = await persist(lambda: self.events.cancel(job_id, CANCEL_REASON), "cancel")
        if not found:
            return refusal(404, "no such stream (it may have expired)")
        state = "running" if found == "running" else "ended"
        return JSONResponse({"id": job_id, "state": state}, status_code=202)


def job_state(job_id: str, fields: dict[str, str], entries: list[LogEntry]) -> dict[str, Any]:
    """``GET /api/streams/{id}`` for a job: the same keys as ``rillet serve``'s where the log has them."""
    stage = accumulate(job_id, fold(entries))
    end = entries[-1] if entries and entries[-1].frame.event == "end" else None
    outcome: dict[str, Any] = json.loads(end.frame.data) if end is not None else {}
    outcome.pop("type", None)
    text = stage.text()
    state: dict[str, Any] = {
        "id": job_id,
        "state": "ended" if end is not None else fields.get("status", "queued"),
        "outcome": None,
        "stop_reason": None,
        "error": None,
        "error_type": None,
        "usage": stage.snapshot().get("usage"),
        **outcome,
        "last_event_id": entries[-1].id if entries else None,
        "owner": fields.get("owner"),
        "attempts": int(fields.get("epoch", 0)),
        "text": text,
    }
    if end is not None:
        state["html"] = render_markdown(text)
    return state


@dataclass(frozen=True, slots=True)
class Replica:
    """A running replica: where it listens, and its streams (for counts and tests)."""

    url: str
    streams: ReplicaStreams
    settings: ServeSettings


@contextlib.asynccontextmanager
async def open_replica(
    settings: ServeSettings, redis: RedisConfig, *, sock: socket.socket | None = None
) -> AsyncIterator[Replica]:
    """Serves while inside; Redis unreachable at start is a :class:`~pipeline.errors.ConfigError`."""
    async with (
        open_redis(redis) as client,
        open_redis(redis, hide_lost=False) as blocking,
        anyio.create_task_group() as tg,
    ):
        queue, events = RedisJobQueue(client, redis), RedisEventLog(client, redis)
        await queue.ensure_group()
        tail = RedisLogTail(blocking, client, redis, uuid.uuid4().hex)
        follower = LogFollower(events, tail, settings.max_streams)
        streams = ReplicaStreams(follower, settings, tg)
        tg.start_soon(follower.run, name="replica log reader")
        app = build_app(ReplicaApi(queue, events, settings), streams, settings)
        try:
            async with serving_app(app, settings, streams.close, sock) as url:
                yield Replica(url, streams, settings)
        finally:
            streams.close()
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(1), contextlib.suppress(*LOST):
                await tail.close()
