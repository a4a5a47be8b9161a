"""How many concurrent streams one simulator process serves: 1,000 SDK streams against one server.

Starts ``python -m pipeline.apps.simulator`` on a free loopback port in a subprocess, then drives
``--streams`` concurrent ``messages.create(stream=True)`` calls from this process with the real
SDK (raw events, no helper) through one connection pool sized to the concurrency. Prints
completed/failed counts, wall time, events/s, the peak number of streams open at once, the
client-side TTFT median, and the simulator's RSS. Bounded by ``--timeout``; loopback only.

    /work/venv/bin/python benchmarks/simulator_concurrency.py [--streams 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import anyio
import httpx2
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient
from simulator_process import simulator_process

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds used so far by a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(args: argparse.Namespace, url: str, pid: int) -> None:
    n = args.streams
    limits = httpx2.Limits(max_connections=n + 16, max_keepalive_connections=n + 16)
    http_client = DefaultAsyncHttpxClient(limits=limits, timeout=httpx2.Timeout(args.timeout, connect=30.0))
    completed = failed = events = open_now = open_peak = 0
    ttfts: list[float] = []
    request_ids: list[str] = []
    errors: dict[str, int] = {}
    peak_rss: dict[str, int] = {}
    start = anyio.Event()

    async def one(i: int, client: AsyncAnthropic) -> None:
        nonlocal completed, failed, events, open_now, open_peak
        await start.wait()
        t0 = time.perf_counter()
        first = True
        try:
            stream = await client.messages.create(
                model="claude-opus-4-7",
                max_tokens=args.max_tokens,
                messages=[{"role": "user", "content": f"Write report number {i}."}],
                stream=True,
            )
            request_ids.append(stream.response.headers["request-id"])
            open_now += 1
            open_peak = max(open_peak, open_now)
            try:
                async with stream:
                    async for event in stream:
                        events += 1
                        if first and event.type == "content_block_delta":
                            ttfts.append(time.perf_counter() - t0)
                            first = False
            finally:
                open_now -= 1
            completed += 1
        except Exception as exc:
            failed += 1
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async def sample_rss() -> None:
        while True:
            for key, value in _rss_kib(pid).items():
                peak_rss[key] = max(peak_rss.get(key, 0), value)
            await anyio.sleep(0.25)

    async with AsyncAnthropic(base_url=url, api_key="sim", max_retries=0, http_client=http_client) as client:
        with anyio.fail_after(args.timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sample_rss)
                async with anyio.create_task_group() as streams:
                    for i in range(n):
                        streams.start_soon(one, i, client)
                    await anyio.sleep(0.1)
                    t_start = time.perf_counter()
                    cpu_client, cpu_sim = time.process_time(), _cpu_s(pid)
                    start.set()
                wall = time.perf_counter() - t_start
                cpu_client, cpu_sim = time.process_time() - cpu_client, _cpu_s(pid) - cpu_sim
                tg.cancel_scope.cancel()
    rss = _rss_kib(pid)
    server_ttfts, server_rates = await _server_truth(url, request_ids)
    print(f"streams={n} max_tokens={args.max_tokens} ttft_ms={args.ttft_ms} tokens_per_s={args.tokens_per_s}")
    print(f"completed={completed} failed={failed} errors={errors or '{}'}")
    print(f"peak_open_streams={open_peak}")
    print(f"wall_s={wall:.2f} events={events} events_per_s={events / wall:,.0f}")
    print(f"cpu_s simulator={cpu_sim:.2f} client={cpu_client:.2f}")
    if ttfts:
        print(f"client_ttft_median_ms={statistics.median(ttfts) * 1000:.1f} p99_ms={_p99(ttfts) * 1000:.1f}")
    if server_ttfts:
        print(
            f"server_ttft_median_ms={statistics.median(server_ttfts) * 1000:.1f} "
            f"p99_ms={_p99(server_ttfts) * 1000:.1f} (receipt to first delta, from the simulator's truth)"
        )
        print(f"server_tokens_per_s_median={statistics.median(server_rates):.1f} (first to last delta)")
    print(
        f"simulator_rss_mib={rss.get('VmRSS', 0) / 1024:.1f} "
        f"peak_rss_mib={max(peak_rss.get('VmHWM', 0), rss.get('VmHWM', 0)) / 1024:.1f}"
    )


async def _server_truth(url: str, request_ids: list[str]) -> tuple[list[float], list[float]]:
    """Server-side TTFT and token rate of each request, from ``GET /_sim/requests/{id}``."""
    ttfts: list[float] = []
    rates: list[float] = []
    limiter = anyio.Semaphore(32)

    async def fetch(client: httpx2.AsyncClient, request_id: str) -> None:
        async with limiter:
            truth = (await client.get(f"/_sim/requests/{request_id}")).json()
        deltas = [e["sent_ns"] for e in truth["events"] if e["type"] == "content_block_delta"]
        if deltas:
            ttfts.append((deltas[0] - truth["received_ns"]) / 1e9)
            if deltas[-1] > deltas[0]:
                rates.append((truth["usage"]["output_tokens"] - 1) / ((deltas[-1] - deltas[0]) / 1e9))

    async with httpx2.AsyncClient(base_url=url) as client, anyio.create_task_group() as tg:
        for request_id in request_ids:
            tg.start_soon(fetch, client, request_id)
    return ttfts, rates


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--tokens-per-s", type=float, default=50.0)
    parser.add_argument("--jitter", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=180.0, help="bound on the whole run, seconds")
    args = parser.parse_args()
    options = (
        "--ttft-ms",
        str(args.ttft_ms),
        "--tokens-per-s",
        str(args.tokens_per_s),
        "--jitter",
        str(args.jitter),
    )
    with simulator_process(*options) as (proc, url):
        anyio.run(_drive, args, url, proc.pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
