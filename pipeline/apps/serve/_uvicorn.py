"""An ASGI app served by uvicorn in the caller's event loop, for as long as a block runs."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.types import ASGIApp

from pipeline.apps.embedded_server import EmbeddedServer, bind_socket, embedded_config, url_of
from pipeline.apps.serve._settings import ServeSettings


@contextlib.asynccontextmanager
async def serving_app(
    app: ASGIApp, settings: ServeSettings, on_shutdown: Callable[[], None], sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serves ``app`` on ``settings.host:port`` (or ``sock``) while inside; yields its URL.

    ``on_shutdown`` runs when uvicorn stops accepting: it must end the open event streams, which
    never end by themselves, so the graceful shutdown does not wait for them.
    """
    config = embedded_config(
        app, ws="none", timeout_keep_alive=5, timeout_graceful_shutdown=settings.graceful_shutdown_s
    )
    server = EmbeddedServer(config, on_shutdown)
    if sock is None:
        sock = bind_socket(settings.host, settings.port)
    bound = sock

    async def serve() -> None:
        try:
            await server.serve([bound])
        finally:
            bound.close()
            server.ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        try:
            await server.ready.wait()
            if not server.started:
                raise OSError(f"the server could not start on {settings.host}:{settings.port}")
            yield url_of(settings.host, bound.getsockname()[1])
        finally:
            server.should_exit = True
