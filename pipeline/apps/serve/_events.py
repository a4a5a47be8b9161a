"""``GET /api/streams/{id}/events``: one cursor over a stream's log, for one EventSource connection.

The loop sends everything after the cursor, then waits for the log to grow: replay after a
reconnect and live delivery are the same loop. The cursor is ``Last-Event-ID`` (EventSource sends
it on every reconnect), else ``?after=N`` (a reloaded page), else the start; the header wins, since
the URL of a reconnect still carries the old ``after``. What a cursor is belongs to the log
(:class:`~pipeline.apps.shared.frame_log.FrameLog`):
a frame id for ``rillet serve``'s own streams, a Redis log id
on a replica. A cursor that names no frame the log holds (evicted, or lost with a Redis crash) gets
a ``reset`` frame with the accumulated message and moves to the log's tail.

The connection ends when the stream's ``end`` frame is sent (a later reconnect gets 204, which stops
EventSource), when the browser leaves (noticed through ``receive()``: uvicorn's ``send`` stays
silent after a disconnect), after ``max_connection_s`` (the browser reconnects with its cursor), at
shutdown (with a last ``end`` frame of outcome ``shutdown`` and no id: the page reconnects with its
cursor, to a replica or to this server once back, and gets the stream's real end), or when a send
stays blocked past ``send_timeout_s`` (the registry's watchdog cuts it): then the response is
abandoned unfinished and uvicorn closes the connection, which the browser again resumes from its
cursor. uvicorn's close waits for the bytes already buffered (at most about 64 KiB past the kernel's
buffers) to drain, so the socket of a reader that never reads again lingers until TCP gives up on
it; its task and its place in the limits are freed at once.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from pipeline.apps.serve._errors import Busy, refusal
from pipeline.apps.serve._readers import Reader
from pipeline.apps.serve._settings import ServeSettings
from pipeline.apps.shared.frame_log import FrameLog

CHUNK_BYTES = 64 * 1024
"""At most this much per send: uvicorn pauses a writer past 64 KiB buffered, which bounds a slow reader."""

RAW_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store, no-transform"),
    (b"x-accel-buffering", b"no"),
]

SHUTDOWN_END = (
    b"event: end\ndata: %s\n\n"
    % json.dumps(
        {"outcome": "shutdown", "error": "the server is shutting down; reconnect to go on", "reconnect": True}
    ).encode()
)
"""The last frame of a connection the server's shutdown ends before its stream's end: no ``id``, so
the browser's ``Last-Event-ID`` stays the last real frame's, and a reconnection (to a replica, or
this server once back) carries on to the stream's real ``end``."""

_ABANDONED: ContextVar[bool] = ContextVar("rillet_serve_abandoned", default=False)


class _QuietAbandon(logging.Filter):
    """Hides uvicorn's complaint about an unfinished response when a stalled reader was cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _ABANDONED.get() and str(record.msg).startswith("ASGI callable returned without completing")
        )


_uvicorn_logger = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietAbandon) for f in _uvicorn_logger.filters):
    _uvicorn_logger.addFilter(_QuietAbandon())


class Entry(Protocol):
    """A stream as an events request sees it: its log, and the connections counted against it."""

    @property
    def log(self) -> FrameLog[Any]: ...

    connections: int


class Streams(Protocol):
    """Where the events endpoint finds streams: the server's own registry, or a replica's Redis logs."""

    def open(self, stream_id: str, last_event_id: str | None) -> AbstractAsyncContextManager[Entry | None]:
        """The stream, held for the request (a replica follows its log meanwhile); None if unknown."""
        ...

    def connection(self, entry: Any, *, resumed: bool) -> AbstractContextManager[Reader]:
        """Counts a reader in while inside; raises :class:`Busy` past a limit."""
        ...


@dataclass(slots=True)
class _Connection:
    send: Send
    log: FrameLog[Any]
    cursor: Any
    settings: ServeSettings
    reader: Reader
    left: bool = False

    async def pump(self) -> None:
        """Sends frames after the cursor until the log is done or the connection's lifetime ends.

        Waits on the log alone: the registry's housekeeping wakes idle logs for heartbeats and
        lifetimes, and cancels this reader if a send blocks past the timeout.
        """
        log, settings, reader, now = self.log, self.settings, self.reader, time.monotonic
        lifetime_end = now() + settings.max_connection_s
        last_sent = now()
        out = [b"retry: %d\n\n" % settings.retry_ms]
        while True:
            batch = log.read(self.cursor, CHUNK_BYTES)
            reader.tally.resets += batch.reset
            out += batch.frames
            if not out and not log.finished and now() - last_sent >= settings.heartbeat_s:
                out.append(b":\n\n")
            if out:
                reader.sending_since = last_sent = now()
                await self.send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                reader.sending_since = None
                self.cursor = batch.cursor
                out = []
                continue
            if log.finished or now() >= lifetime_end:
                return
            await log.changed.wait()


async def _watch_disconnect(receive: Receive, connection: _Connection, scope: anyio.CancelScope) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            connection.left = True
            scope.cancel()
            return


class EventsEndpoint:
    """A raw ASGI endpoint, outside Starlette's stack: it owns every send and the disconnect, and
    with hundreds of readers each send's cost counts (Starlette's wrappers added about a tenth)."""

    def __init__(self, streams: Streams, settings: ServeSettings) -> None:
        self._streams = streams
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        last_event_id = headers.get("last-event-id")
        raw = last_event_id if last_event_id is not None else _query_value(scope, "after")
        try:
            async with self._streams.open(scope["path_params"]["stream_id"], raw) as entry:
                if entry is None:
                    await refusal(404, "no such stream (it may have expired)")(scope, receive, send)
                    return
                log = entry.log
                cursor = log.cursor(raw)
                if log.finished and not log.read(cursor, 1).frames:
                    await Response(status_code=204)(scope, receive, send)
                    return
                with self._streams.connection(entry, resumed=last_event_id is not None) as reader:
                    await self._stream(log, cursor, reader, receive, send)
        except Busy as exc:
            await refusal(503, str(exc))(scope, receive, send)

    async def _stream(
        self, log: FrameLog[Any], cursor: Any, reader: Reader, receive: Receive, send: Send
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": RAW_HEADERS})
        connection = _Connection(send, log, cursor, self._settings, reader)
        with reader.scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_disconnect, receive, connection, tg.cancel_scope)
                await connection.pump()
                tg.cancel_scope.cancel()
        if not connection.left and not reader.stalled:
            ended = log.finished and not log.read(connection.cursor, 1).frames
            last = SHUTDOWN_END if reader.shutdown and not ended else b""
            with anyio.move_on_after(self._settings.send_timeout_s):
                await send({"type": "http.response.body", "body": last, "more_body": False})
                return
        if not connection.left:
            _ABANDONED.set(True)


def _query_value(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[-1] if values else None
