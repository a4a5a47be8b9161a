"""The SDK's HTTP transport on :class:`~pipeline.wire.stamps.StampedSocket`: each chunk carries its wire time.

httpx2 reads a response through httpcore2's network stream; this one reads the socket itself (no
asyncio transport buffering chunks in between), so after each ``read`` the socket's
``received_ns`` belongs to exactly the bytes just returned, and the response hook of
:mod:`pipeline.client` can hand that stamp to the chunk. TLS is anyio's, layered on the raw
stream: a decrypted chunk is stamped with the arrival of the record that completed it.
"""

from __future__ import annotations

import errno
import math
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.abc
import httpcore2
import httpx2
from anyio.lowlevel import checkpoint_if_cancelled
from anyio.streams.tls import TLSAttribute, TLSStream

from pipeline.wire.reader import WireReader
from pipeline.wire.stamps import StampedSocket

NEXT_ADDRESS_AFTER_S = 0.25
"""How long one address of several may take to connect before the next is tried (RFC 8305)."""

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
"""A ``setsockopt`` argument list, as httpcore2 passes them."""


class _RawStream(anyio.abc.ByteStream):
    """A non-blocking socket as an anyio byte stream; ``received_ns`` stamps the chunk returned last.

    Read in the event loop (waiting only when the kernel has nothing), or, given a
    :class:`~pipeline.wire.reader.WireReader`, by its thread the moment bytes arrive.
    """

    def __init__(self, sock: StampedSocket, reader: WireReader | None) -> None:
        self.sock = sock
        self.received_ns = 0
        self._inbox = reader.open(sock) if reader is not None else None
        self._rest: tuple[bytes, int] | None = None

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await checkpoint_if_cancelled()
        if self._inbox is None:
            data = await self._read(max_bytes)
            self.received_ns = self.sock.received_ns
        else:
            data, self.received_ns = self._rest or await self._inbox.receive()
            self._rest = (data[max_bytes:], self.received_ns) if len(data) > max_bytes else None
            data = data[:max_bytes]
        if not data:
            raise anyio.EndOfStream
        return data

    async def _read(self, max_bytes: int) -> bytes:
        while True:
            try:
                return self.sock.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)

    def readable(self) -> bool:
        """httpcore2 asks before reusing an idle connection: anything to read means the server closed it.

        An EOF, a TLS close_notify or a stray 408 alike. With a reading thread, the bytes are in the
        inbox or still in the socket; its lock keeps them from being between the two.
        """
        if self._inbox is None:
            return _pending(self.sock)
        with self._inbox.lock:
            return bool(self._inbox.chunks) or self._inbox.ended is not None or _pending(self.sock)

    async def send(self, item: bytes) -> None:
        await checkpoint_if_cancelled()
        view = memoryview(item)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                await anyio.wait_writable(self.sock)

    async def send_eof(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        if self._inbox is not None:
            self._inbox.close()
        anyio.notify_closing(self.sock)
        self.sock.close()

    @property
    def extra_attributes(self) -> dict[Any, Any]:
        return {
            anyio.abc.SocketAttribute.raw_socket: lambda: self.sock,
            anyio.abc.SocketAttribute.local_address: self.sock.getsockname,
            anyio.abc.SocketAttribute.remote_address: self.sock.getpeername,
        }


def _pending(sock: StampedSocket) -> bool:
    """Whether the (non-blocking) socket has bytes or an EOF to read; peeking leaves its stamps alone."""
    try:
        socket.socket.recv(sock, 1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


class WireStream(httpcore2.AsyncNetworkStream):
    """httpcore2's view of one connection, plain or TLS, with the socket's stamps at hand."""

    def __init__(self, raw: _RawStream, stream: anyio.abc.ByteStream) -> None:
        self.socket = raw.sock
        self._raw = raw
        self._stream = stream

    @property
    def received_ns(self) -> int:
        """When the bytes that completed the chunk :meth:`read` returned last reached the socket."""
        return self._raw.received_ns

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            with _failures_as(httpcore2.ReadTimeout, httpcore2.ReadError), anyio.fail_after(timeout):
                return await self._stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _failures_as(httpcore2.WriteTimeout, httpcore2.WriteError), anyio.fail_after(timeout):
            await self._stream.send(buffer)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> WireStream:
        try:
            with anyio.fail_after(timeout):
                tls = await TLSStream.wrap(
                    self._raw,
                    ssl_context=ssl_context,
                    hostname=server_hostname,
                    standard_compatible=False,
                )
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            if isinstance(exc, TimeoutError):
                raise httpcore2.ConnectTimeout(str(exc)) from exc
            if isinstance(exc, (OSError, anyio.BrokenResourceError, anyio.EndOfStream)):
                raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        self.socket.expect_request()  # the handshake's last flight is not the request's first byte
        return WireStream(self._raw, tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._stream.extra(TLSAttribute.ssl_object, None)
        if info == "client_addr":
            return self.socket.getsockname()
        if info == "server_addr":
            return self.socket.getpeername()
        if info == "socket":
            return self.socket
        if info == "is_readable":
            return self._raw.readable()
        return None


@contextmanager
def _failures_as(timed_out: type[Exception], broken: type[Exception]) -> Iterator[None]:
    """A read's or write's failures as httpcore2's exceptions, which the SDK classifies.

    ``ETIMEDOUT`` from the TCP stack (a dead peer) is a ``TimeoutError`` too, but a broken connection.
    """
    try:
        yield
    except TimeoutError as exc:
        raise (timed_out if exc.errno is None else broken)(str(exc)) from exc
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        raise broken(str(exc) or type(exc).__name__) from exc


class WireBackend(httpcore2.AsyncNetworkBackend):
    """Opens :class:`WireStream` connections, read by ``reader``'s thread if given; the rest is anyio's."""

    def __init__(self, reader: WireReader | None = None) -> None:
        self._reader = reader
        self._fallback = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> WireStream:
        try:
            with anyio.fail_after(timeout):
                sock = await _connect(host, port, local_address, list(socket_options or ()))
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        try:
            raw = _RawStream(sock, self._reader)
        except BaseException:
            sock.close()
            raise
        return WireStream(raw, raw)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        return await self._fallback.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def _connect(
    host: str, port: int, local_address: str | None, options: list[SocketOption]
) -> StampedSocket:
    """Tries each address in turn without blocking the loop, giving all but the last
    :data:`NEXT_ADDRESS_AFTER_S` (as Happy Eyeballs does), so a dead IPv6 route costs a moment."""
    error: OSError | None = None
    addresses = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for index, (family, kind, proto, _, address) in enumerate(addresses):
        sock = StampedSocket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in options:
                sock.setsockopt(*option)
            if local_address is not None:
                sock.bind((local_address, 0))
            code = sock.connect_ex(address)
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):  # Windows says WSAEWOULDBLOCK
                last = index == len(addresses) - 1
                with anyio.move_on_after(math.inf if last else NEXT_ADDRESS_AFTER_S) as attempt:
                    await anyio.wait_writable(sock)
                code = (
                    errno.ETIMEDOUT
                    if attempt.cancelled_caught
                    else sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                )
            if code:
                raise OSError(code, f"connecting to {host}:{port}: {errno.errorcode.get(code, code)}")
            return sock
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
    raise error or OSError(f"{host}:{port} has no address")


class WireTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport over :class:`WireBackend`.

    httpx2 builds its connection pool without a way to choose the network backend, so the pool is
    rebuilt here with the same settings and :class:`WireBackend`.
    """

    def __init__(
        self,
        *,
        limits: httpx2.Limits,
        ssl_context: ssl.SSLContext,
        socket_options: Iterable[SocketOption] = (),
        reader: WireReader | None = None,
    ) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            socket_options=list(socket_options),
            network_backend=WireBackend(reader),
        )
