"""One stream re-emitted to many browsers: 500 concurrent SSE clients on one ``rillet serve`` process.

Starts the server (with its embedded simulator) in a subprocess on a free loopback port, starts
one stream whose first token comes after ``--ttft-ms``, connects ``--clients`` raw HTTP/1.1 SSE
readers to it, and reads until every reader got the ``end`` frame. Checks that every client got
every frame id exactly once, in order. Prints:

- delivery lag per frame and client: from the moment the SSE sink appended the frame to the log
  (stamped in the server) to the moment the client's ``recv`` returned it (both clocks are
  CLOCK_MONOTONIC, shared by the two processes), for frames appended after every client was
  connected: p50, p99, max;
- the server's RSS before the clients connected, at the end, and per connection.

    /work/venv/bin/python benchmarks/sse_fanout.py [--clients 500] [--tokens-per-s 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2

from pipeline.apps.serve import ServeSettings, open_server
from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.stages import StageFactory
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.cost import CostStage
from pipeline.stages.latency import LatencyStage

ROOT = Path(__file__).resolve().parents[1]
FRAME_ID = re.compile(rb"^id: (\d+)\n", re.MULTILINE)


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds used so far by a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# --- the server process ---------------------------------------------------------------------


async def serve_child(clients: int) -> dict[str, list[tuple[int, int]]]:
    """The server: simulator, pipeline, SSE sink; stamps each append; stops on SIGTERM."""
    stamps: dict[str, list[tuple[int, int]]] = {}
    settings = ServeSettings(
        port=0, simulated=True, max_connections=clients + 16, max_connections_per_stream=clients + 16
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_simulator(SimulatorSettings()) as sim:
            client = make_client(api_key="sim", base_url=sim.base_url, max_connections=16)
            stages: list[StageFactory] = [AccumulateStage, LatencyStage, CostStage]
            async with client, open_server(settings, client=client, stages=stages) as server:
                sink = server.sink
                write = sink.write

                async def stamped_write(batch: Sequence[Any]) -> None:
                    await write(batch)
                    now = time.monotonic_ns()
                    for stream_id in {item.stream_id for item in batch}:
                        stamps.setdefault(stream_id, []).append((sink.logs[stream_id].last_id, now))

                sink.write = stamped_write  # type: ignore[method-assign]
                print(server.url, flush=True)
                async for _ in signals:
                    break
    return stamps


# --- the clients ----------------------------------------------------------------------------


class Reader(asyncio.Protocol):
    """One raw SSE connection. ``data_received`` runs straight from the event loop's selector, so the
    arrival stamp is not delayed by a task switch; parsing waits until the run is over."""

    def __init__(self, request: bytes, done: asyncio.Future[None]) -> None:
        self.request = request
        self.done = done
        self.chunks: list[tuple[int, bytes]] = []
        self.tail = b""

    async def connect(self, host: str, port: int) -> asyncio.BaseTransport:
        transport, _ = await asyncio.get_running_loop().create_connection(lambda: self, host, port)
        return transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.monotonic_ns(), data))
        if b"\nevent: end\n" in self.tail + data and not self.done.done():
            self.done.set_result(None)
        self.tail = data[-16:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def arrivals(self) -> tuple[list[int], dict[int, int]]:
        """Frame ids in the order received, and when each arrived (the stamp of its last byte)."""
        head = b"".join(data for _, data in self.chunks).partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 200"), head[:80]
        skip = len(head) + 4
        order: list[int] = []
        arrived: dict[int, int] = {}
        chunked = frames = b""
        for stamp, data in self.chunks:
            chunked += data[skip:]
            skip = max(0, skip - len(data))
            decoded, chunked = dechunk(chunked)
            frames += decoded
            cut = frames.rfind(b"\n\n") + 2
            for match in FRAME_ID.finditer(frames, 0, cut):
                order.append(int(match.group(1)))
                arrived[int(match.group(1))] = stamp
            frames = frames[cut:]
        return order, arrived


def dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """The complete chunks' data in ``raw``, and what is left of it."""
    out = []
    while True:
        line_end = raw.find(b"\r\n")
        if line_end < 0:
            break
        size = int(raw[:line_end], 16)
        if len(raw) < line_end + 2 + size + 2:
            break
        out.append(raw[line_end + 2 : line_end + 2 + size])
        raw = raw[line_end + 2 + size + 2 :]
        if size == 0:
            break
    return b"".join(out), raw


async def drive(args: argparse.Namespace, url: str, server_pid: int) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
        body = {
            "prompt": "rivers",
            "max_tokens": args.max_tokens,
            "simulator": {"ttft_ms": args.ttft_ms, "tokens_per_s": args.tokens_per_s},
        }
        created = (await http.post("/api/streams", json=body)).json()
        before = rss_kib(server_pid)
        cpu_before = cpu_s(server_pid)
        loop = asyncio.get_running_loop()
        request = f"GET {created['events_url']} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        readers = [Reader(request, loop.create_future()) for _ in range(args.clients)]
        started = time.monotonic()
        with anyio.fail_after(args.timeout):
            transports = [await reader.connect(host, int(port)) for reader in readers]
            # the count lives in the server process: poll it
            while (await http.get(created["status_url"])).json()["connections"] < args.clients:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            all_connected_ns = time.monotonic_ns()
            await asyncio.gather(*(reader.done for reader in readers))
        for transport in transports:
            transport.close()
        elapsed = time.monotonic() - started
        cpu = cpu_s(server_pid) - cpu_before
        state = (await http.get(created["status_url"])).json()
    return {
        "id": created["id"],
        "readers": readers,
        "all_connected_ns": all_connected_ns,
        "elapsed": elapsed,
        "cpu": cpu,
        "state": state,
        "rss_before": before,
        "rss_after": rss_kib(server_pid),
    }


def report(args: argparse.Namespace, run: dict[str, Any], stamps: list[tuple[int, int]]) -> None:
    last_id = run["state"]["last_event_id"]
    expected = list(range(1, last_id + 1))
    received = [reader.arrivals() for reader in run["readers"]]
    complete = sum(order == expected for order, _ in received)
    appended: dict[int, int] = {}
    for upto, ns in stamps:
        for frame_id in range(len(appended) + 1, upto + 1):
            appended[frame_id] = ns
    live = [i for i in expected if appended.get(i, 0) > run["all_connected_ns"]]
    lags = sorted((arrived[i] - appended[i]) / 1e6 for _, arrived in received for i in live)
    p = statistics.quantiles(lags, n=100) if len(lags) > 1 else [0.0] * 99
    before, after = run["rss_before"], run["rss_after"]
    print(f"clients: {args.clients}, stream: {args.max_tokens} tokens at {args.tokens_per_s:g} tokens/s")
    print(f"frames per client: {last_id} ({len(live)} appended after all clients connected)")
    print(f"clients with every frame exactly once, in order: {complete}/{args.clients}")
    print(
        f"outcome: {run['state']['outcome']}, wall time {run['elapsed']:.1f} s, "
        f"server CPU {run['cpu']:.1f} s ({run['cpu'] / run['elapsed']:.0%} of one core)"
    )
    print(f"delivery lag (sink append -> client recv), {len(lags)} samples:")
    print(f"  p50 {p[49]:.2f} ms   p99 {p[98]:.2f} ms   max {lags[-1] if lags else 0:.2f} ms")
    per_connection = (after["VmRSS"] - before["VmRSS"]) / args.clients
    mib = {key: value / 1024 for key, value in after.items()}
    print(
        f"server RSS: {before['VmRSS'] / 1024:.1f} MiB before clients, {mib['VmRSS']:.1f} MiB at the end "
        f"(peak {mib['VmHWM']:.1f} MiB), {per_connection:.1f} KiB per connection"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=2000)
    parser.add_argument("--tokens-per-s", type=float, default=100.0)
    parser.add_argument("--ttft-ms", type=float, default=3000.0, help="time for the clients to connect")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--serve-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child is not None:
        stamps = anyio.run(serve_child, args.clients)
        args.serve_child.write_text(json.dumps(stamps))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        stamps_path = Path(folder) / "stamps.json"
        cmd = [sys.executable, __file__, "--clients", str(args.clients), "--serve-child", str(stamps_path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) as proc:
            try:
                assert proc.stdout is not None
                url = proc.stdout.readline().strip()
                run = anyio.run(drive, args, url, proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        stamps = json.loads(stamps_path.read_text())[run["id"]]
    report(args, run, [tuple(pair) for pair in stamps])
    return 0


if __name__ == "__main__":
    sys.exit(main())
