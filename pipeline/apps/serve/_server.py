"""Serving the app with uvicorn in the caller's event loop, over a pipeline whose streams outlive requests.

Shutdown order matters with open EventSource connections, which never end by themselves: when
uvicorn stops accepting connections, the registry first tells every reader to finish its response
(the browser would reconnect, and finds nothing), and cancels running streams (their text is kept),
so the graceful shutdown ends in about the time a cancelled stream takes to flush, not never.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
from anthropic import AsyncAnthropic

from pipeline.apps.serve._app import create_app
from pipeline.apps.serve._registry import StreamRegistry
from pipeline.apps.serve._settings import ServeSettings
from pipeline.apps.serve._uvicorn import serving_app
from pipeline.apps.shared.frame_log import SseLogSink
from pipeline.runner import Pipeline
from pipeline.sink import Buffer, SinkSpec
from pipeline.stages import StageFactory

SSE_BUFFER = Buffer(max_items=4096)
"""The SSE sink only appends to memory, so ``block`` never makes the pipeline wait on a browser."""


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: where it listens and what it holds."""

    url: str
    registry: StreamRegistry
    sink: SseLogSink
    settings: ServeSettings


@contextlib.asynccontextmanager
async def open_server(
    settings: ServeSettings,
    *,
    client: AsyncAnthropic,
    stages: Sequence[StageFactory],
    sinks: Sequence[SinkSpec] = (),
    sock: socket.socket | None = None,
) -> AsyncIterator[Server]:
    """Serves on ``settings.host:port`` while inside; on exit streams are cancelled and every sink flushes.

    ``stages`` and ``sinks`` are the same as ``rillet run``'s; the SSE sink is added here. ``sock``:
    a socket bound already (socket activation, or a test's own buffer sizes), used instead.
    """
    sink = SseLogSink(max_bytes=settings.max_log_bytes)
    specs = [SinkSpec(sink, SSE_BUFFER), *sinks]
    async with Pipeline(client, stages=stages, sinks=specs) as pipeline, anyio.create_task_group() as streams:
        registry = StreamRegistry(pipeline, sink, settings, streams)
        async with serving_app(create_app(registry, settings), settings, registry.close, sock) as url:
            yield Server(url, registry, sink, settings)
        registry.close()
