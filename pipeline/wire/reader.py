"""A thread that reads sockets the moment bytes arrive, so a busy event loop cannot blur their stamps.

The kernel stamps each packet (:mod:`pipeline.wire.stamps`), but a packet waiting in the receive queue is
merged with the next one and takes its stamp: a reader later than the gap between two server
writes loses the first one's arrival. A closed-loop benchmark at concurrency 256 on two cores
keeps its event loop busy for hundreds of milliseconds at a time (every slot sends its next request
at once), longer than the gap between a first and second delta, and measured TTFT p99 200 ms too
long. This thread only reads: it waits on one epoll set for every registered socket, drains what
arrived with its stamp into the connection's :class:`Inbox`, and wakes the loop if it waits. It
needs the GIL for each read: :func:`prompt_reading` makes the busy thread yield it within
:data:`SWITCH_INTERVAL_S` and keeps full garbage collections (which hold it for up to 140 ms with a
benchmark's records alive) from running, so a stamp is lost only when a server writes twice
within that interval. At most :data:`MAX_CHUNKS`
chunks wait per connection: past it the socket leaves the epoll set until the loop catches up, so
a slow consumer still gets TCP backpressure.

asyncio only: the loop is woken through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import select
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from pipeline.wire.stamps import STAMPED, StampedSocket

SWITCH_INTERVAL_S = 0.0005
"""How long the GIL's holder keeps it once the thread asks (Python's default is 5 ms)."""

FULL_COLLECTION_EVERY = 100_000
"""Younger collections between full ones while reading promptly (Python's default is 10)."""

MAX_CHUNKS = 64
"""Chunks read ahead per connection before its socket is paused."""

READ_BYTES = 65536


class Inbox:
    """One connection's chunks as the thread read them, each with its kernel stamp."""

    def __init__(self, sock: StampedSocket, reader: WireReader) -> None:
        self.sock = sock
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.ended: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.lock = threading.RLock()
        self.paused = False
        self.closed = False
        self._reader = reader

    async def receive(self) -> tuple[bytes, int]:
        """The next chunk and its stamp; ``b""`` at the end of the stream."""
        while not self.chunks:
            if self.ended is not None:
                if isinstance(self.ended, EOFError):
                    return b"", 0
                raise self.ended
            waiter = self.waiter = self.loop.create_future()
            if self.chunks or self.ended is not None:  # the thread got there first
                self.waiter = None
                continue
            try:
                await waiter
            finally:
                self.waiter = None
        chunk = self.chunks.popleft()
        if self.paused and len(self.chunks) < MAX_CHUNKS // 2:
            self._reader.resume(self)
        return chunk

    def fill(self) -> None:
        """In the thread: reads until the socket is empty, the inbox full, or the stream over."""
        with self.lock:
            if self.closed:
                return
            try:
                while len(self.chunks) < MAX_CHUNKS:
                    data = self.sock.recv(READ_BYTES)
                    if not data:
                        self.ended = EOFError()
                        break
                    self.chunks.append((data, self.sock.received_ns))
                else:
                    self._reader.pause(self)
                    if len(self.chunks) < MAX_CHUNKS // 2:  # drained meanwhile, past its resume check
                        self._reader.resume(self)
            except BlockingIOError:
                pass
            except OSError as exc:
                self.ended = exc
            if self.ended is not None:
                self._reader.forget(self)
        waiter = self.waiter  # only ``receive`` clears it: waking twice is harmless, never waking is not
        if waiter is not None and (self.chunks or self.ended is not None):
            self.loop.call_soon_threadsafe(_wake, waiter)

    def fail(self, exc: BaseException) -> None:
        """In the thread: this connection broke the reader; it ends with ``exc``, the others go on."""
        with self.lock:
            self.ended = self.ended or exc
            self._reader.forget(self)
        waiter = self.waiter
        if waiter is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_wake, waiter)

    def close(self) -> None:
        """Stops reading before the socket closes, so the thread never reads a reused descriptor.

        A task still waiting for this connection ends at once, as it does when read in the loop.
        """
        with self.lock:
            self.closed = True
            self.ended = self.ended or anyio.ClosedResourceError()
            self._reader.forget(self)
        if self.waiter is not None:
            _wake(self.waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WireReader:
    """The reading thread for every connection of a process's clients; started on first use.

    A paused socket leaves the epoll set altogether: epoll reports a reset or hang-up even for a
    socket registered for nothing, which would wake the thread again and again.
    """

    def __init__(self) -> None:
        self.pauses = 0
        """How often a consumer fell :data:`MAX_CHUNKS` behind and its socket was paused."""
        self._epoll = select.epoll()
        self._inboxes: dict[int, Inbox] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def open(self, sock: StampedSocket) -> Inbox:
        """Reads ``sock`` from now on, into the returned inbox."""
        inbox = Inbox(sock, self)
        self._inboxes[sock.fileno()] = inbox
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rillet wire reader", daemon=True)
                self._thread.start()
        return inbox

    def pause(self, inbox: Inbox) -> None:
        """Under the inbox's lock."""
        self.pauses += 1
        inbox.paused = True
        self._epoll.unregister(inbox.sock.fileno())

    def resume(self, inbox: Inbox) -> None:
        """From the loop, or from the thread under the inbox's lock (which is reentrant)."""
        with inbox.lock:
            if inbox.paused and not inbox.closed and inbox.ended is None:
                inbox.paused = False
                self._epoll.register(inbox.sock.fileno(), select.EPOLLIN)

    def forget(self, inbox: Inbox) -> None:
        """Under the inbox's lock."""
        fd = inbox.sock.fileno()
        if fd >= 0 and self._inboxes.get(fd) is inbox:
            del self._inboxes[fd]
            if not inbox.paused:
                self._epoll.unregister(fd)

    def _run(self) -> None:
        inboxes = self._inboxes
        while True:
            for fd, _ in self._epoll.poll():
                inbox = inboxes.get(fd)
                if inbox is None:
                    continue
                try:
                    inbox.fill()
                except Exception as exc:  # one connection's failure must not stop every other's reads
                    inbox.fail(exc)


@functools.cache
def shared_reader() -> WireReader | None:
    """The process's one reading thread; None where the kernel does not stamp arrivals (not Linux)."""
    return WireReader() if STAMPED else None


os.register_at_fork(after_in_child=shared_reader.cache_clear)  # a forked child has no thread running


@contextmanager
def prompt_reading() -> Iterator[None]:
    """While inside, the reading thread gets the GIL within half a millisecond of asking.

    Full collections are put off (young objects are still collected; reference counting frees the
    rest) until the normal thresholds are back.
    """
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(thresholds[0], thresholds[1], FULL_COLLECTION_EVERY)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
