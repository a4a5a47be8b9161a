"""The streams a server runs and keeps, and the browser connections reading them.

A stream runs in the server's task group, never in a request's task, so a browser that leaves
never stops it: only :meth:`StreamEntry.cancel` (``POST .../cancel``) or shutdown does. Ended
streams stay readable for ``stream_ttl_s``; every count has a bound (see :class:`ServeSettings`),
and so do the bytes the kept logs hold together (``max_kept_bytes``): the oldest ended streams are
forgotten first, checked whenever a stream starts, ends or is looked up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from anyio.abc import TaskGroup

from pipeline.apps.serve._errors import Busy
from pipeline.apps.serve._readers import Reader, Readers
from pipeline.apps.serve._settings import ServeSettings
from pipeline.apps.shared.frame_log import SseLogSink, StreamLog
from pipeline.runner import Pipeline, StreamRun

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamEntry:
    """One stream the server started: its run, its log, its readers."""

    run: StreamRun
    log: StreamLog
    created: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    connections: int = 0
    rendered: str | None = None

    @property
    def running(self) -> bool:
        return self.ended_at is None

    @property
    def stream_id(self) -> str:
        return self.run.stream_id

    def cancel(self) -> None:
        """Closes the upstream response; the text so far is kept and the outcome is ``cancelled``."""
        if self.running:
            self.run.cancel("stopped from the browser")


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """Counts for tests, the benchmark and operators."""

    streams: int
    running: int
    connections: int
    connections_total: int
    resumed_total: int
    stalled_total: int
    resets_total: int


class StreamRegistry:
    """Starts streams in ``task_group`` through ``pipeline``, whose fan-out feeds ``sink``."""

    def __init__(
        self, pipeline: Pipeline, sink: SseLogSink, settings: ServeSettings, task_group: TaskGroup
    ) -> None:
        self._pipeline = pipeline
        self._sink = sink
        self._settings = settings
        self._task_group = task_group
        self._entries: dict[str, StreamEntry] = {}
        self._readers = Readers(settings, task_group, self._logs)

    @property
    def closing(self) -> bool:
        return self._readers.closing

    def start(self, request: dict[str, Any]) -> StreamEntry:
        """Starts a stream; raises :class:`Busy` past ``max_running_streams`` or ``max_streams``."""
        if self.closing:
            raise Busy("the server is shutting down")
        self._expire()
        self._trim()
        running = sum(entry.running for entry in self._entries.values())
        if running >= self._settings.max_running_streams:
            raise Busy(f"too many streams running (at most {self._settings.max_running_streams})")
        if len(self._entries) >= self._settings.max_streams:
            ended = (entry for entry in self._entries.values() if not entry.running)
            oldest = min(ended, key=lambda entry: entry.created, default=None)
            if oldest is None:
                raise Busy(f"too many streams kept (at most {self._settings.max_streams})")
            self._forget(oldest)
        run = self._pipeline.stream(request)
        entry = StreamEntry(run, self._sink.open_log(run.stream_id))
        self._entries[run.stream_id] = entry
        self._task_group.start_soon(self._run, entry, name=f"stream {run.stream_id}")
        return entry

    def get(self, stream_id: str) -> StreamEntry | None:
        """The stream, if it is running or ended less than ``stream_ttl_s`` ago."""
        self._expire()
        self._trim()
        return self._entries.get(stream_id)

    @asynccontextmanager
    async def open(self, stream_id: str, last_event_id: str | None) -> AsyncIterator[StreamEntry | None]:
        """The stream for one events request (:class:`~pipeline.apps.serve._events.Streams`)."""
        yield self.get(stream_id)

    def connection(self, entry: StreamEntry, *, resumed: bool) -> AbstractContextManager[Reader]:
        """Counts a reader in while inside; raises :class:`Busy` past a limit."""
        return self._readers.connection(entry, resumed=resumed)

    def statistics(self) -> RegistryStatistics:
        tally = self._readers.tally
        return RegistryStatistics(
            streams=len(self._entries),
            running=sum(entry.running for entry in self._entries.values()),
            connections=len(self._readers.active),
            connections_total=tally.connections,
            resumed_total=tally.resumed,
            stalled_total=tally.stalled,
            resets_total=tally.resets,
        )

    def close(self) -> None:
        """Shutdown: readers end their responses, running streams are cancelled (their text is kept)."""
        self._readers.close()
        for entry in self._entries.values():
            if entry.running:
                entry.run.cancel("the server is shutting down")

    async def _run(self, entry: StreamEntry) -> None:
        try:
            await self._pipeline.run_stream(entry.run)
        except Exception:
            logger.exception("stream %s failed", entry.stream_id)
            entry.log.close()
        finally:
            entry.ended_at = time.monotonic()
            self._trim()

    def _logs(self) -> Iterator[StreamLog]:
        return (entry.log for entry in self._entries.values())

    def _expire(self) -> None:
        deadline = time.monotonic() - self._settings.stream_ttl_s
        for entry in list(self._entries.values()):
            if entry.ended_at is not None and entry.ended_at < deadline:
                self._forget(entry)

    def kept_bytes(self) -> int:
        """Bytes of frames every kept log holds (what ``max_kept_bytes`` bounds)."""
        return sum(entry.log.size for entry in self._entries.values())

    def _trim(self) -> None:
        """Forgets the oldest ended streams while the kept logs hold more than ``max_kept_bytes``."""
        kept = self.kept_bytes()
        if kept <= self._settings.max_kept_bytes:
            return
        ended = sorted((e for e in self._entries.values() if not e.running), key=lambda e: e.created)
        for entry in ended:
            if kept <= self._settings.max_kept_bytes:
                return
            kept -= entry.log.size
            self._forget(entry)

    def _forget(self, entry: StreamEntry) -> None:
        del self._entries[entry.stream_id]
        self._sink.discard(entry.stream_id)
