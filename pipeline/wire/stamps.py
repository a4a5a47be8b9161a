"""Wire times: when bytes reached a socket, stamped by the kernel, not when a busy event loop got to them.

A Python client stamping arrivals itself measures its own event loop too: with 256 streams on two
cores a first delta waited in the socket buffer for up to 300 ms before the loop read it, and that
wait showed up as the server's TTFT. Linux stamps every received packet (``SO_TIMESTAMPNS``) and
hands the stamp of the newest one copied to ``recvmsg`` as ancillary data, whatever the reader was
doing meanwhile. :class:`StampedSocket` reads through ``recvmsg`` behind the ordinary ``recv`` that
asyncio's transports call, so one class serves the client (:mod:`pipeline.wire.transport`) and the
simulator's listener (:class:`StampedListener`), whose ground truth must be kernel-true as well.

The kernel stamps with ``CLOCK_REALTIME``; stamps are moved onto ``time.perf_counter_ns``
(``CLOCK_MONOTONIC``), the clock every other stamp in rillet uses, by the offset between the two
clocks read at conversion (two vDSO calls, well under a microsecond). Elsewhere than Linux, or for
a packet without a stamp, a read is stamped with ``perf_counter_ns`` as it returns.

``request_sent_ns`` is the moment before the first ``send`` that follows a read (or the first
ever): on an HTTP/1.1 client connection, the first byte of each request on the wire.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
import weakref
from typing import Any

SO_TIMESTAMPNS = 35
"""Linux's option (and control message type) for nanosecond receive stamps; the socket module lacks it."""

STAMPED = sys.platform == "linux"
"""Whether the kernel stamps arrivals; elsewhere reads are stamped in user space as they return."""

_STAMP = struct.Struct("@qq")
_ANCILLARY_BYTES = socket.CMSG_SPACE(_STAMP.size) if STAMPED else 0

_accepted: weakref.WeakValueDictionary[int, StampedSocket] = weakref.WeakValueDictionary()


def _perf_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The newest packet's kernel stamp on the ``perf_counter_ns`` clock, or now if there is none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _STAMP.size:
            seconds: int
            nanoseconds: int
            seconds, nanoseconds = _STAMP.unpack_from(data)
            before = time.perf_counter_ns()
            offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - (before + time.perf_counter_ns()) // 2
            return seconds * 1_000_000_000 + nanoseconds - offset
    return time.perf_counter_ns()


class StampedSocket(socket.socket):
    """A TCP socket whose reads note when their bytes arrived and whose writes note when requests left."""

    __slots__ = ("_answered", "received_ns", "request_sent_ns")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received_ns = 0
        self.request_sent_ns = 0
        self._answered = True
        if STAMPED:
            try:
                self.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:  # a sandbox refusing it: reads are then stamped as they return
                pass

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not STAMPED:
            data = super().recv(bufsize, flags)
            self.received_ns = time.perf_counter_ns()
        else:
            data, ancillary, _, _ = self.recvmsg(bufsize, _ANCILLARY_BYTES, flags)
            self.received_ns = _perf_ns(ancillary)
        self._answered = True
        return data

    def send(self, data: Any, flags: int = 0) -> int:
        self._note_send()
        return super().send(data, flags)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        self._note_send()
        return super().sendmsg(buffers, *args)

    def expect_request(self) -> None:
        """The next send starts a request (a TLS handshake's own writes just ended)."""
        self._answered = True

    def _note_send(self) -> None:
        if self._answered:
            self.request_sent_ns = time.perf_counter_ns()
            self._answered = False


class StampedListener(socket.socket):
    """A listening socket whose accepted connections are :class:`StampedSocket` (see :func:`accepted`)."""

    __slots__ = ()

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = StampedSocket(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)
        _accepted[fd] = conn
        return conn, address


def accepted(fd: int) -> StampedSocket | None:
    """The connection a :class:`StampedListener` accepted as ``fd`` (transports hide the object itself)."""
    return _accepted.get(fd)
