"""Loopback relays in front of the simulator, as a deployment would put them: TLS, an HTTP proxy."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener


async def _splice(a: ByteStream, b: ByteStream) -> None:
    """Copies both ways until either side closes."""
    async with anyio.create_task_group() as tg:

        async def pipe(source: ByteStream, sink: ByteStream) -> None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async for chunk in source:
                    await sink.send(chunk)
            tg.cancel_scope.cancel()

        tg.start_soon(pipe, a, b)
        tg.start_soon(pipe, b, a)


@asynccontextmanager
async def _serving(
    handle: Callable[[ByteStream], Awaitable[None]], tls: ssl.SSLContext | None
) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        served = listener if tls is None else TLSListener(listener, tls, standard_compatible=False)
        tg.start_soon(served.serve, handle)
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def tls_front(target: str, context: ssl.SSLContext) -> AsyncIterator[str]:
    """A TLS terminator on loopback in front of ``target`` (``http://host:port``); yields its https URL."""
    host, port = target.removeprefix("http://").rsplit(":", 1)

    async def handle(client: ByteStream) -> None:
        async with client, await anyio.connect_tcp(host, int(port)) as upstream:
            await _splice(client, upstream)

    async with _serving(handle, context) as port_used:
        yield f"https://localhost:{port_used}"


@asynccontextmanager
async def connect_proxy(tunnels: list[str]) -> AsyncIterator[str]:
    """An HTTP proxy on loopback that only tunnels (``CONNECT``), noting each target in ``tunnels``."""

    async def handle(client: ByteStream) -> None:
        async with client:
            head = BufferedByteReceiveStream(client)
            method, target, _ = (await head.receive_until(b"\r\n", 8192)).decode().split(" ")
            while await head.receive_until(b"\r\n", 8192):
                pass  # the request's headers: a tunnel needs none of them
            if method != "CONNECT":
                await client.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            tunnels.append(target)
            host, port = target.rsplit(":", 1)
            async with await anyio.connect_tcp(host, int(port)) as upstream:
                await client.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await _splice(client, upstream)

    async with _serving(handle, None) as port:
        yield f"http://127.0.0.1:{port}"
