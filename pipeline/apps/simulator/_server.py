"""Running the app with uvicorn inside the caller's event loop, on a socket bound up front.

Binding the socket ourselves makes ``port=0`` work without reading uvicorn's logs, and the
server's signal capture is disabled so an embedding program keeps its own Ctrl+C handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipeline.apps.embedded_server import EmbeddedServer, bind_socket, embedded_config, url_of
from pipeline.wire.stamps import StampedListener, StampedSocket, accepted

from ._app import RECEIVED_NS, SimState, create_app
from ._settings import SimulatorSettings


class _StampedProtocol(HttpToolsProtocol):
    """Stamps each request with the kernel's arrival time of its first bytes (:mod:`pipeline.wire.stamps`).

    The handler starts a loop turn or more later (tens of microseconds idle, milliseconds when the
    server is busy), and the read itself may come late; that wait is the server's, so its TTFT (the
    ground truth) must include it. The stamp reaches the app in the ASGI scope's extensions
    (:data:`RECEIVED_NS`).
    """

    _arrived_ns = 0
    _wire: StampedSocket | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        self._wire = accepted(sock.fileno()) if sock is not None else None
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        wire = self._wire
        self._arrived_ns = wire.received_ns if wire is not None else time.perf_counter_ns()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {RECEIVED_NS: {"ns": self._arrived_ns}}


class Simulator:
    """A running simulator: its URL and its ground truth."""

    def __init__(self, state: SimState, base_url: str) -> None:
        self._state = state
        self.base_url = base_url
        self.settings = state.settings

    @property
    def requests(self) -> list[str]:
        """Ids of the requests received (the last ``truth_limit``), oldest first."""
        return self._state.store.ids()

    def truth(self, request_id: str) -> dict[str, Any]:
        """Ground truth of one request (see ``GET /_sim/requests/{id}``); KeyError if unknown."""
        return self._state.store.get(request_id).to_json()


@contextlib.asynccontextmanager
async def open_simulator(
    settings: SimulatorSettings | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Simulator]:
    """Serve the simulator on ``host:port`` in a task of the current event loop while inside.

    On exit, streams still in flight are cut (their clients see a transport error) and the
    server stops.
    """
    app = create_app(settings)
    state: SimState = app.state.sim
    sock = bind_socket(host, port, StampedListener)
    config = embedded_config(app, http=_StampedProtocol, timeout_keep_alive=30, timeout_graceful_shutdown=5)
    server = EmbeddedServer(config)
    bound_port = sock.getsockname()[1]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                await server.ready.wait()
                yield Simulator(state, url_of(host, bound_port))
            finally:
                state.cancel_active()
                server.should_exit = True
    except BaseExceptionGroup as group:
        # The caller's own exception should reach it as itself, not wrapped by our task group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
