"""The browser connections a server holds, whatever their logs are: limits, a watchdog, heartbeats.

Both ways of serving share it: ``rillet serve`` over the streams it runs, and a replica over the
Redis logs it follows (:mod:`pipeline.apps.serve._replica`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from pipeline.apps.serve._errors import Busy
from pipeline.apps.serve._settings import ServeSettings
from pipeline.apps.shared.frame_log import FrameLog


@dataclass(slots=True)
class Tally:
    """Counts since the server started, for statistics and ``/metrics``."""

    connections: int = 0
    resumed: int = 0
    stalled: int = 0
    resets: int = 0


@dataclass(eq=False, slots=True)
class Reader:
    """One connection reading a log; stopped at shutdown, or cut when its send stalls.

    The reader stamps ``sending_since`` around each send: one watchdog checking every reader
    costs less than a timeout scope around each of thousands of sends a second.
    """

    tally: Tally
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    sending_since: float | None = None
    stalled: bool = False
    shutdown: bool = False
    """Stopped by the server's shutdown: its response ends with a ``shutdown`` end frame."""


class Counted(Protocol):
    """What a connection is counted against: its stream's connections."""

    connections: int


class Readers:
    """Every open connection; ``logs`` lists the logs to wake for heartbeats and lifetimes."""

    def __init__(
        self, settings: ServeSettings, task_group: TaskGroup, logs: Callable[[], Iterable[FrameLog[Any]]]
    ) -> None:
        self._settings = settings
        self._logs = logs
        self.active: set[Reader] = set()
        self.tally = Tally()
        self.closing = False
        self._housekeeping = anyio.CancelScope()
        task_group.start_soon(self._housekeep, name="serve housekeeping")

    @contextmanager
    def connection(self, entry: Counted, *, resumed: bool) -> Iterator[Reader]:
        """Counts a reader in while inside; raises :class:`Busy` past a limit."""
        if self.closing:
            raise Busy("the server is shutting down")
        limit = self._settings.max_connections_per_stream
        if entry.connections >= limit:
            raise Busy(f"too many connections to this stream (at most {limit})")
        if len(self.active) >= self._settings.max_connections:
            raise Busy(f"too many connections (at most {self._settings.max_connections})")
        reader = Reader(self.tally)
        self.tally.connections += 1
        self.tally.resumed += resumed
        entry.connections += 1
        self.active.add(reader)
        try:
            yield reader
        finally:
            self.active.discard(reader)
            entry.connections -= 1

    def close(self) -> None:
        """Shutdown: every reader ends its response (its browser reconnects elsewhere, or later)."""
        self.closing = True
        self._housekeeping.cancel()
        for reader in list(self.active):
            reader.shutdown = True
            reader.scope.cancel()

    async def _housekeep(self) -> None:
        """Cuts stalled readers; wakes idle logs, so that readers send heartbeats and end in time."""
        settings = self._settings
        period = max(0.01, min(settings.heartbeat_s, settings.send_timeout_s) / 4)
        with self._housekeeping:
            while True:
                await anyio.sleep(period)
                stalled_before = time.monotonic() - settings.send_timeout_s
                for reader in self.active:
                    since = reader.sending_since
                    if since is not None and since < stalled_before and not reader.stalled:
                        reader.stalled = True
                        self.tally.stalled += 1
                        reader.scope.cancel()
                for log in self._logs():
                    if not log.finished:
                        log.wake()
