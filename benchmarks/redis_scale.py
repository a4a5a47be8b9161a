"""Scale-out on one machine: 1,000 concurrent report jobs through 4 ``rillet worker`` processes.

Real processes on loopback: ``redis-server`` (AOF ``everysec``), the simulator streaming every
report at ``--tokens-per-s`` (30, a model's pace) up to ``--max-tokens`` (200), and four workers
of 250 slots each (``tests/scale/scale_harness.py``), all on this machine's cores. Measured:

- jobs/s: 1,000 jobs queued first, timed from the first worker being ready to the last
  acknowledgement; each one's text is then checked against the simulator's ``reference_text``.
- appends/s and frames/s: fenced appends (one round trip, one Lua script per coalescing window)
  from the workers' own ``/metrics``; p50/p99 append latency from their
  ``rillet_log_append_seconds`` histograms, interpolated within buckets as ``histogram_quantile``.
- append-to-browser latency: one ``rillet serve --redis`` replica, a process of its own (as
  deployed: it shares no event loop with the workers, the probes or the browsers), serves
  ``--watched`` (240) of the jobs, spread over the queue, and ``--probe-logs`` (16) probe logs,
  256 in all: a replica's default bound on the logs it follows. Each log has its own HTTP
  connection reading ``GET /api/streams/{id}/events`` as EventSource does. Each probe log gets a
  fenced append (the workers' script) every 100 ms, the logs staggered, and each frame is timed
  from the call to the arrival of the chunk holding it at its SSE client. Worker frames carry no
  time, so they cannot be timed from outside; probes on their own schedules keep sampling while
  the machine stalls, where one probe waiting on the last would skip the stall (coordinated
  omission). A direct ``XREAD`` over the probe logs gives the Redis hop alone, and every watched
  job's browser must get the reference text.
- Redis memory per finished report (``used_memory`` less client buffers, after the run less
  before the submits, over 1,000), Redis's own time per script (``INFO latencystats``) and the
  CPU seconds of every process, to show where the two cores went.

    /work/venv/bin/python benchmarks/redis_scale.py [--jobs 1000] [--workers 4] [--tokens-per-s 30]
        [--watched 240] [--probe-logs 16]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import coredis
import httpx2
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "scale")]

from replica_harness import ReplicaProcess  # noqa: E402
from scale_harness import (  # noqa: E402
    RedisServer,
    SimulatorProcess,
    Workers,
    redis_and_simulator,
    report_request,
    write_config,
)

from pipeline.apps.bench.stats import percentile  # noqa: E402
from pipeline.apps.scale import Frame, LogEntry, RedisConfig, RedisEventLog, RedisJobQueue, open_redis  # noqa: E402
from pipeline.apps.scale.frames import accumulate, fold  # noqa: E402
from pipeline.apps.serve import ServeSettings  # noqa: E402
from pipeline.apps.simulator import SimulatorSettings, reference_text  # noqa: E402
from tests.serve.harness import stream_text  # noqa: E402
from tests.serve.sse_parser import Event, SseParser  # noqa: E402

PROBE_EVERY_S = 0.1
"""Each probe log's pace: about a worker's coalescing window (``flush_ms``, 75)."""
MAX_LOGS = ServeSettings().max_streams
"""The logs one replica follows at most (its default): the watched jobs and the probe logs share them."""

FrameKey = tuple[str, str]
"""``(job id, log id)`` of a probe frame."""


async def memory(redis: coredis.Redis[bytes]) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


async def cpu(redis: coredis.Redis[bytes]) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Reader:
    """One ``XREAD BLOCK`` over the probe logs, as a replica runs it: the Redis hop alone."""

    def __init__(self, redis: coredis.Redis[bytes], events: RedisEventLog, job_ids: list[str]) -> None:
        self.redis = redis
        self.keys = events.keys
        self.cursors = dict.fromkeys(map(events.keys.log, job_ids), "0-0")
        self.received_ns: dict[FrameKey, int] = {}

    async def run(self) -> None:
        while True:
            reply = await self.redis.xread(self.cursors, count=1024, block=1000)
            now = time.perf_counter_ns()
            for key, entries in (reply or {}).items():
                name = key.decode()
                self.cursors[name] = entries[-1].identifier.decode()
                job_id = self.keys.job_id(name)
                for entry in entries:
                    self.received_ns[job_id, entry.identifier.decode()] = now


class Browsers:
    """An EventSource-like connection per log, all over one client (an SSL context costs 24 ms to make).

    Every event is stamped with the arrival of the chunk that completed it. :attr:`done` is set once
    each watched job's connection has ended (its ``end`` came) and every probe frame given to
    :meth:`expect` has arrived.
    """

    def __init__(self, url: str, watched: list[str], probed: list[str]) -> None:
        self.url = url
        self.job_ids = watched + probed
        self.events: dict[str, list[Event]] = {job_id: [] for job_id in self.job_ids}
        self.received_ns: dict[FrameKey, int] = {}
        self.connected = 0
        self.all_connected = anyio.Event()
        self.open_watched = set(watched)
        self.pending: set[FrameKey] | None = None
        self.done = anyio.Event()

    async def run(self) -> None:
        limits = httpx2.Limits(max_connections=len(self.job_ids))
        async with (
            httpx2.AsyncClient(base_url=self.url, timeout=60, limits=limits) as http,
            anyio.create_task_group() as tg,
        ):
            for job_id in self.job_ids:
                tg.start_soon(self.read, http, job_id)

    async def read(self, http: httpx2.AsyncClient, job_id: str) -> None:
        parser, events = SseParser(), self.events[job_id]
        async with http.stream("GET", f"/api/streams/{job_id}/events") as response:
            response.raise_for_status()
            self.connected += 1
            if self.connected == len(self.job_ids):
                self.all_connected.set()
            async for chunk in response.aiter_bytes():
                now = time.perf_counter_ns()
                for event in parser.feed(chunk):
                    events.append(event)
                    key = job_id, event.last_event_id
                    self.received_ns[key] = now
                    if self.pending is not None:
                        self.pending.discard(key)
                self._check()
        self.open_watched.discard(job_id)
        self._check()

    def expect(self, frames: Iterable[FrameKey]) -> None:
        """The probe frames that :attr:`done` waits for."""
        self.pending = {key for key in frames if key not in self.received_ns}
        self._check()

    def _check(self) -> None:
        if self.pending is not None and not self.pending and not self.open_watched:
            self.done.set()


async def probe(
    events: RedisEventLog, job_id: str, sent_ns: dict[FrameKey, int], stop: anyio.Event, offset: float
) -> None:
    """A fenced append to one probe log every 100 ms after ``offset``, until ``stop``."""
    epoch = (await events.take(job_id, "probe")).epoch
    await anyio.sleep(offset)
    for seq in itertools.count(1):
        if stop.is_set():
            return
        entry = LogEntry(seq, epoch, Frame("content_block_delta", b'{"probe":true}'))
        sent_ns[job_id, entry.id] = time.perf_counter_ns()
        await events.append(job_id, epoch, [entry], chars=seq)
        await anyio.sleep(PROBE_EVERY_S)


def check_browsers(
    browsers: Browsers, watched: dict[str, dict[str, Any]], settings: SimulatorSettings
) -> list[str]:
    """A line for each watched job whose browser did not get the reference text and one ``end``."""
    failures = []
    for job_id, request in watched.items():
        events = browsers.events[job_id]
        text, ends = stream_text(events), sum(event.type == "end" for event in events)
        if text != reference_text(request, settings) or ends != 1:
            failures.append(f"browser of {job_id}: {len(text)} chars, {ends} end")
    return failures


def latencies_ms(sent_ns: dict[FrameKey, int], received_ns: dict[FrameKey, int]) -> list[float]:
    return sorted((received_ns[key] - sent) / 1e6 for key, sent in sent_ns.items() if key in received_ns)


def scrape(urls: list[str]) -> tuple[float, float, dict[float, float]]:
    """Appends, frames and the merged append-latency buckets of every worker."""
    appends = frames = 0.0
    buckets: dict[float, float] = defaultdict(float)
    for url in urls:
        for family in text_string_to_metric_families(httpx2.get(url, timeout=10).text):
            for sample in family.samples:
                if sample.name == "rillet_log_append_seconds_count":
                    appends += sample.value
                elif sample.name == "rillet_log_appended_frames_total":
                    frames += sample.value
                elif sample.name == "rillet_log_append_seconds_bucket":
                    buckets[float(sample.labels["le"])] += sample.value
    return appends, frames, dict(buckets)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket the rank falls in."""
    bounds = sorted(buckets)
    rank = q * buckets[bounds[-1]]
    lower = previous = 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - previous) / max(buckets[bound] - previous, 1)
        lower, previous = bound, buckets[bound]
    return lower


async def run(args: argparse.Namespace, redis: RedisServer, sim: SimulatorProcess, tmp: Path) -> int:
    settings = SimulatorSettings(tokens_per_s=args.tokens_per_s)
    config = RedisConfig(url=redis.url)
    worker_config = write_config(tmp / "worker.toml", redis.url)
    with contextlib.ExitStack() as processes:
        workers = Workers(worker_config, sim.base_url)
        processes.callback(workers.close)
        replica = ReplicaProcess(worker_config, redis.url)
        processes.callback(replica.close)
        async with open_redis(config) as client, open_redis(config) as reader_client:
            queue, events = RedisJobQueue(client, config), RedisEventLog(client, config)
            await queue.ensure_group()
            slots = args.jobs // args.workers
            requests = [report_request(i, max_tokens=args.max_tokens) for i in range(args.jobs)]
            job_ids = [f"job{i:04d}" for i in range(args.jobs)]
            memory_before = await memory(client)
            for job_id, request in zip(job_ids, requests, strict=True):
                await queue.submit(request, job_id)
            # Job hashes no worker is ever given: only the probe appends to their logs.
            probe_jobs = [f"probe{i:02d}" for i in range(args.probe_logs)]
            for job_id in probe_jobs:
                await client.hset(
                    events.keys.job(job_id), {"request": "{}", "status": "queued", "epoch": "0"}
                )
            await anyio.to_thread.run_sync(replica.wait_ready)
            replica_cpu_before = cpu_seconds(replica.process.pid)  # not its imports
            picked = (i * args.jobs // args.watched for i in range(args.watched))  # spread over the queue
            watched = {job_ids[i]: requests[i] for i in picked}
            browsers = Browsers(replica.url, list(watched), probe_jobs)
            reader = Reader(reader_client, events, probe_jobs)
            sent_ns: dict[FrameKey, int] = {}
            stop = anyio.Event()
            cpu_before = await cpu(client)
            own_before = sum(os.times()[:2])
            options = ("--concurrency", str(slots), "--metrics-port", "0")
            async with anyio.create_task_group() as probes:
                probes.start_soon(reader.run)
                probes.start_soon(browsers.run)
                with anyio.fail_after(60):
                    await browsers.all_connected.wait()
                with anyio.fail_after(args.timeout):
                    async with anyio.create_task_group() as tg:
                        for i, job_id in enumerate(probe_jobs):  # spread evenly over the period
                            tg.start_soon(
                                probe, events, job_id, sent_ns, stop, i * PROBE_EVERY_S / len(probe_jobs)
                            )
                        # Off the event loop (the probe keeps its pace); the clock starts with the first.
                        pids = [(await anyio.to_thread.run_sync(workers.start, *options))[0]]
                        started = time.perf_counter()
                        pids += [
                            (await anyio.to_thread.run_sync(workers.start, *options))[0]
                            for _ in range(args.workers - 1)
                        ]
                        while await client.xlen(queue.keys.jobs):  # noqa: ASYNC110 (other processes)
                            await anyio.sleep(0.2)
                        elapsed = time.perf_counter() - started
                        stop.set()
                    browsers.expect(sent_ns)
                    await browsers.done.wait()
                probes.cancel_scope.cancel()
            urls = re.findall(r"(http://127\.0\.0\.1:\d+/metrics)", "".join(workers.log))
            redis_cpu = await cpu(client) - cpu_before
            worker_cpu = sum(cpu_seconds(pid) for pid in pids)
            sim_cpu, replica_cpu = (
                cpu_seconds(sim.process.pid),
                cpu_seconds(replica.process.pid) - replica_cpu_before,
            )
            own_cpu = sum(os.times()[:2]) - own_before
            memory_after = await memory(client)
            server_ms = await script_latency(client)
            appends, frames, buckets = scrape(urls)
            failures, durations = await check(events, job_ids, requests, settings)
    browser_failures = check_browsers(browsers, watched, settings)
    to_browser = latencies_ms(sent_ns, browsers.received_ns)
    to_reader = latencies_ms(sent_ns, reader.received_ns)
    ideal = args.max_tokens / args.tokens_per_s
    durations.sort()
    for line in (failures + browser_failures)[:20]:
        print(line)
    print(
        f"{args.jobs} jobs ({args.max_tokens} tokens at {args.tokens_per_s:g} tok/s, {ideal:.1f} s alone), "
        f"{args.workers} workers x {slots} slots (the jobs queued before), all done in {elapsed:.1f} s; "
        f"taken to finished p50={percentile(durations, 50):.1f} s p99={percentile(durations, 99):.1f} s; "
        f"texts exact: {args.jobs - len(failures)}/{args.jobs}"
    )
    print(
        f"jobs_per_s={args.jobs / elapsed:.1f} appends_per_s={appends / elapsed:.0f} "
        f"frames_per_s={frames / elapsed:.0f}"
    )
    print(
        f"append_latency_ms p50={histogram_quantile(0.5, buckets) * 1000:.1f} "
        f"p99={histogram_quantile(0.99, buckets) * 1000:.1f} (workers' histograms, {appends:.0f} appends)"
    )
    print(f"inside_redis_per_script_ms {server_ms} (INFO latencystats, every fenced script)")
    print(
        f"append_to_browser p50={percentile(to_browser, 50):.1f} p99={percentile(to_browser, 99):.1f} ms "
        f"({len(to_browser)} frames over {args.probe_logs} SSE connections)"
    )
    print(
        f"  max={to_browser[-1]:.1f} ms; the same frames to a direct XREAD in this process "
        f"(the Redis hop alone): p50={percentile(to_reader, 50):.1f} p99={percentile(to_reader, 99):.1f} ms"
    )
    print(
        f"  one replica process following {args.watched + args.probe_logs} logs for as many "
        f"connections; the {args.watched} watching jobs got their exact text: "
        f"{args.watched - len(browser_failures)}/{args.watched}"
    )
    print(
        f"redis_memory_per_report_kib={(memory_after - memory_before) / args.jobs / 1024:.1f} "
        f"redis_cpu={redis_cpu / elapsed * 100:.0f}% of a core"
    )
    print(
        f"cpu_seconds over the run: workers={worker_cpu:.1f} simulator={sim_cpu:.1f} redis={redis_cpu:.1f} "
        f"replica={replica_cpu:.1f} benchmark+browsers={own_cpu:.1f} "
        f"(of {elapsed * os.cpu_count():.0f} available)"  # type: ignore[operator]
    )
    return 1 if failures or browser_failures else 0


async def script_latency(redis: coredis.Redis[bytes]) -> str:
    """Redis's own p50/p99/p99.9 for ``EVALSHA``: the script's time inside Redis, no network, no client."""
    stats = await redis.info("latencystats")
    usec = stats["latency_percentiles_usec_evalsha"]
    return " ".join(f"{key}={value / 1000:.3f}" for key, value in usec.items())


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def check(
    events: RedisEventLog, job_ids: list[str], requests: list[dict[str, Any]], settings: SimulatorSettings
) -> tuple[list[str], list[float]]:
    failures: list[str] = []
    durations: list[float] = []
    for job_id, request in zip(job_ids, requests, strict=True):
        state = await events.status(job_id)
        text = accumulate(job_id, fold(await events.range(job_id))).text()
        if state.get("status") != "done" or text != reference_text(request, settings):
            failures.append(f"job {job_id}: {state.get('status')} {state.get('error', '')}")
        durations.append(float(state["finished"]) - float(state["started"]))
    return failures, durations


def main(args: argparse.Namespace) -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_and_simulator(Path(tmp), "--tokens-per-s", str(args.tokens_per_s)) as (redis, sim),
    ):
        return anyio.run(run, args, redis, sim, Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tokens-per-s", type=float, default=30.0)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--watched", type=int, default=240, help="jobs a browser watches on the replica")
    parser.add_argument("--probe-logs", type=int, default=16, help="logs the timed probe frames go to")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parsed = parser.parse_args()
    if not (0 <= parsed.watched <= parsed.jobs and parsed.probe_logs >= 1):
        parser.error("--watched must be 0 to --jobs and --probe-logs at least 1")
    if parsed.watched + parsed.probe_logs > MAX_LOGS:
        parser.error(f"--watched + --probe-logs is at most {MAX_LOGS}, the logs one replica follows")
    sys.exit(main(parsed))
