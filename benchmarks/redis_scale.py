"""Scale-out on one machine: 1,000 concurrent report jobs through 4 ``rillet worker`` processes.

Real processes on loopback: ``redis-server`` (AOF ``everysec``), the simulator streaming every
report at ``--tokens-per-s`` (30, a model's pace) up to ``--max-tokens`` (200), and four workers
of 250 slots each (``tests/scale/scale_harness.py``), all on this machine's cores. Measured:

- jobs/s: 1,000 jobs queued first, timed from the first worker being ready to the last
  acknowledgement; each one's text is then checked against the simulator's ``reference_text``.
- appends/s and frames/s: fenced appends (one round trip, one Lua script per coalescing window)
  from the workers' own ``/metrics``; p50/p99 append latency from their
  ``rillet_log_append_seconds`` histograms, interpolated within buckets as ``histogram_quantile``.
- append-to-reader latency: one reader task runs ``XREAD BLOCK`` over every job's log at once
  (what a ``rillet serve`` replica does); the benchmark itself appends a probe frame every 10 ms
  to a probe job's log through the same fenced script, and times each from the call to the
  reader's receipt. The reader also counts every frame the workers appended.
- Redis memory per finished report (``used_memory`` less client buffers, after the run less
  before the submits, over 1,000), Redis's own time per script (``INFO latencystats``) and the
  CPU seconds of every process, to show where the two cores went.

    /work/venv/bin/python benchmarks/redis_scale.py [--jobs 1000] [--workers 4] [--tokens-per-s 30]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import coredis
import httpx2
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "scale")]

from scale_harness import RedisServer, SimulatorProcess, Workers, report_request, write_config  # noqa: E402

from pipeline.bench.stats import percentile  # noqa: E402
from pipeline.scale import Frame, LogEntry, RedisConfig, RedisEventLog, RedisJobQueue, open_redis  # noqa: E402
from pipeline.scale.frames import accumulate, fold  # noqa: E402
from pipeline.simulator import SimulatorSettings, reference_text  # noqa: E402

PROBE_EVERY_S = 0.01


async def memory(redis: coredis.Redis[bytes]) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


async def cpu(redis: coredis.Redis[bytes]) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Reader:
    """One ``XREAD BLOCK`` over every log, as a replica runs it; counts frames, times the probes."""

    def __init__(self, redis: coredis.Redis[bytes], keys: list[str], probe_key: str) -> None:
        self.redis = redis
        self.cursors = dict.fromkeys([*keys, probe_key], "0-0")
        self.probe_key = probe_key
        self.frames = 0
        self.received_ns: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            reply = await self.redis.xread(self.cursors, count=1024, block=1000)
            now = time.perf_counter_ns()
            for key, entries in (reply or {}).items():
                name = key.decode()
                self.cursors[name] = entries[-1].identifier.decode()
                if name == self.probe_key:
                    for entry in entries:
                        self.received_ns[entry.identifier.decode()] = now
                else:
                    self.frames += len(entries)


async def probe(events: RedisEventLog, job_id: str, sent_ns: dict[str, int]) -> None:
    """A fenced append every 10 ms to a log of its own; the reader times each one."""
    take = await events.take(job_id, "probe")
    seq = 0
    while True:
        seq += 1
        entry = LogEntry(seq, take.epoch, Frame("content_block_delta", b'{"probe":true}'))
        sent_ns[entry.id] = time.perf_counter_ns()
        await events.append(job_id, take.epoch, [entry], chars=seq)
        await anyio.sleep(PROBE_EVERY_S)


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
    workers = Workers(write_config(tmp / "worker.toml", redis.url), sim.base_url)
    try:
        async with open_redis(config) as client, open_redis(config) as reader_client:
            queue, events = RedisJobQueue(client, config), RedisEventLog(client, config)
            await queue.ensure_group()
            slots = args.jobs // args.workers
            requests = [report_request(i, max_tokens=args.max_tokens) for i in range(args.jobs)]
            job_ids = [f"job{i:04d}" for i in range(args.jobs)]
            memory_before = await memory(client)
            for job_id, request in zip(job_ids, requests, strict=True):
                await queue.submit(request, job_id)
            probe_job = "probe"  # a job hash no worker is ever given: only the probe appends to its log
            await client.hset(events.keys.job(probe_job), {"request": "{}", "status": "queued", "epoch": "0"})
            reader = Reader(reader_client, [events.keys.log(j) for j in job_ids], events.keys.log(probe_job))
            sent_ns: dict[str, int] = {}
            cpu_before = await cpu(client)
            options = ("--concurrency", str(slots), "--metrics-port", "0")
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader.run)
                tg.start_soon(probe, events, probe_job, sent_ns)
                # Off the event loop (the probe keeps its pace); the clock starts when the first is ready.
                pids = [(await anyio.to_thread.run_sync(workers.start, *options))[0]]
                started = time.perf_counter()
                pids += [
                    (await anyio.to_thread.run_sync(workers.start, *options))[0]
                    for _ in range(args.workers - 1)
                ]
                with anyio.fail_after(args.timeout):
                    while await client.xlen(queue.keys.jobs):  # noqa: ASYNC110 (other processes)
                        await anyio.sleep(0.2)
                elapsed = time.perf_counter() - started
                tg.cancel_scope.cancel()
            urls = re.findall(r"(http://127\.0\.0\.1:\d+/metrics)", "".join(workers.log))
            redis_cpu = await cpu(client) - cpu_before
            worker_cpu = sum(cpu_seconds(pid) for pid in pids)
            sim_cpu, own_cpu = cpu_seconds(sim.process.pid), sum(os.times()[:2])
            memory_after = await memory(client)
            server_ms = await script_latency(client)
            appends, frames, buckets = scrape(urls)
            failures, durations = await check(events, job_ids, requests, settings)
    finally:
        workers.close()
    latencies = sorted(
        (reader.received_ns[i] - sent) / 1e6 for i, sent in sent_ns.items() if i in reader.received_ns
    )
    ideal = args.max_tokens / args.tokens_per_s
    durations.sort()
    for line in failures[:20]:
        print(line)
    print(
        f"{args.jobs} jobs ({args.max_tokens} tokens at {args.tokens_per_s:g} tok/s, {ideal:.1f} s alone), "
        f"{args.workers} workers x {slots} slots (the jobs queued before), all done in {elapsed:.1f} s; "
        f"taken to finished p50={percentile(durations, 50):.1f} s p99={percentile(durations, 99):.1f} s; "
        f"texts exact: {args.jobs - len(failures)}/{args.jobs}"
    )
    print(
        f"jobs_per_s={args.jobs / elapsed:.1f} appends_per_s={appends / elapsed:.0f} "
        f"frames_per_s={frames / elapsed:.0f} frames_read_by_one_reader={reader.frames}/{frames:.0f}"
    )
    print(
        f"append_latency_ms p50={histogram_quantile(0.5, buckets) * 1000:.1f} "
        f"p99={histogram_quantile(0.99, buckets) * 1000:.1f} (workers' histograms, {appends:.0f} appends)"
    )
    print(f"inside_redis_per_script_ms {server_ms} (INFO latencystats, every fenced script)")
    print(
        f"append_to_reader_ms p50={percentile(latencies, 50):.1f} p99={percentile(latencies, 99):.1f} "
        f"max={latencies[-1]:.1f} ({len(latencies)} probe appends, one XREAD over {args.jobs + 1} logs)"
    )
    print(
        f"redis_memory_per_report_kib={(memory_after - memory_before) / args.jobs / 1024:.1f} "
        f"redis_cpu={redis_cpu / elapsed * 100:.0f}% of a core"
    )
    print(
        f"cpu_seconds over the run: workers={worker_cpu:.1f} simulator={sim_cpu:.1f} redis={redis_cpu:.1f} "
        f"benchmark+reader={own_cpu:.1f} (of {elapsed * os.cpu_count():.0f} available)"  # type: ignore[operator]
    )
    return 1 if failures else 0


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
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        try:
            sim = SimulatorProcess("--tokens-per-s", str(args.tokens_per_s))
            try:
                return anyio.run(run, args, redis, sim, Path(tmp))
            finally:
                sim.close()
        finally:
            redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tokens-per-s", type=float, default=30.0)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    sys.exit(main(parser.parse_args()))
