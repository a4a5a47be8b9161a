"""Serve replicas for the scale-out tests: SSE readers, replica processes, and a TCP proxy in front.

The proxy stands for a load balancer: each connection goes to the first backend that accepts it,
so once a replica is killed, browsers reconnect through the same origin to the next one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from anyio.abc import SocketStream
from anyio.from_thread import start_blocking_portal
from scale_harness import REPO, end_process

from tests.serve.harness import stream_text
from tests.serve.sse_parser import Event, SseParser


@dataclass
class SseReader:
    """One SSE connection's events, read to its end; ``seen`` is set once an id reaches ``until_seq``."""

    events: list[Event] = field(default_factory=list)
    status: int = 0
    until_seq: int | None = None
    seen: anyio.Event = field(default_factory=anyio.Event)

    async def read(
        self, url: str, job_id: str, headers: Mapping[str, str] | None = None, stop_after_chars: int = 0
    ) -> None:
        """Reads until the end (or, with ``stop_after_chars``, until that much text came, then leaves)."""
        parser = SseParser()
        async with (
            httpx2.AsyncClient(base_url=url, timeout=60) as http,
            http.stream("GET", f"/api/streams/{job_id}/events", headers=headers) as response,
        ):
            self.status = response.status_code
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    self.events.append(event)
                    if self.until_seq is not None and seq_of(event) >= self.until_seq:
                        self.seen.set()
                if stop_after_chars and len(self.text()) >= stop_after_chars:
                    return

    def text(self) -> str:
        return stream_text(self.events)

    def ids(self) -> list[str]:
        return [event.last_event_id for event in self.events]

    def named(self, name: str) -> list[Event]:
        return [event for event in self.events if event.type == name]


def seq_of(event: Event) -> int:
    return int(event.last_event_id.split("-")[0]) if event.last_event_id else 0


def job_request(fields: Mapping[str, str]) -> dict[str, object]:
    request: dict[str, object] = json.loads(fields["request"])
    return request


class ReplicaProcess:
    """``rillet serve CONFIG --redis URL --port 0`` in a process of its own, ended by its pid."""

    def __init__(self, config: Path, redis_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.apps", "serve", str(config), "--redis", redis_url, "--port=0"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = ""

    def wait_ready(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            found = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
            if found:
                self.url = found.group(1)
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                return
        raise RuntimeError("the replica did not start")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        end_process(self.process)


async def _pipe(source: SocketStream, sink: SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        await sink.aclose()


async def _forward(client: SocketStream, ports: Sequence[int]) -> None:
    async with client:
        for port in ports:
            try:
                backend = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                continue  # that replica is dead: the next one
            async with backend, anyio.create_task_group() as tg:
                tg.start_soon(_pipe, client, backend)
                tg.start_soon(_pipe, backend, client)
            return


@contextmanager
def tcp_proxy(ports: Sequence[int]) -> Iterator[str]:
    """A loopback proxy, run in a thread of its own; yields its URL."""
    with start_blocking_portal(backend="asyncio") as portal:
        listener = portal.call(lambda: anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0))
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        future = portal.start_task_soon(listener.serve, lambda client: _forward(client, ports))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            future.cancel()
            portal.call(listener.aclose)
