"""uvicorn inside the caller's event loop, on a socket bound up front: the simulator and ``rillet serve``.

Binding the socket ourselves makes ``port=0`` work and the real port known before serving; uvicorn's
signal capture is off so the embedding program keeps its own Ctrl+C handling.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Generator
from typing import Any

import anyio
import uvicorn

from pipeline.errors import cannot_listen


def embedded_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for a server inside rillet: its logging, lifespan and backlog are rillet's."""
    defaults: dict[str, Any] = {
        "log_config": None,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "backlog": 4096,
    }
    return uvicorn.Config(app, **(defaults | options))


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that says when it is ready and runs ``on_shutdown`` before it stops."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.ready = anyio.Event()
        self._on_shutdown = on_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._on_shutdown is not None:
            self._on_shutdown()
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the embedding program owns Ctrl+C


def bind_socket(host: str, port: int, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A bound (not yet listening) TCP socket of class ``kind`` for ``host:port``; port 0 picks a free one."""
    try:
        family, socktype, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise cannot_listen(host, port, exc) from exc
    sock = kind(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise cannot_listen(host, port, exc) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def url_of(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard address is reached through loopback."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
