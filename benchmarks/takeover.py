"""Worker takeover: 100 ``kill -9`` at seeded random offsets, each job finished by another worker.

Real processes on loopback: ``redis-server`` (AOF on), the simulator, and ``rillet worker``
processes of one slot each (forked from a warm parent, ``tests/scale/scale_harness.py``). Each job
draws a kill offset in chars of its report; when its log has that many, its worker is killed
with SIGKILL and another one (there is always an idle one) takes the job over after the lease
and resumes it from the log. A job is killed at most once, so each takeover's cost is its job's.

Counted, not assumed: ``takeovers`` is the sum of every job's epochs past the first (a takeover
the benchmark did not cause would show); lost and duplicated chars come from aligning each final
text with the simulator's uninterrupted ``reference_text`` (difflib opcodes, as
``benchmarks/faults.py``); extra output tokens are what the simulator sent over all of a job's
requests beyond one uninterrupted report. Death to first resumed token runs from the kill to
the simulator sending the first text delta of the resumed request (both ``CLOCK_MONOTONIC``).
The last line is the verdict:

    takeovers=100 lost_chars=0 duplicated_chars=0 extra_output_tokens_max=N

    /work/venv/bin/python benchmarks/takeover.py [--takeovers 100] [--in-flight 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "scale"), str(ROOT / "tests" / "reliability")]

from fault_harness import misaligned  # noqa: E402
from scale_harness import (  # noqa: E402
    RedisServer,
    SimulatorProcess,
    Workers,
    billing,
    redis_and_simulator,
    report_request,
    simulator_truths,
    write_config,
)

from pipeline.apps.bench.stats import percentile  # noqa: E402
from pipeline.apps.scale import RedisConfig, RedisEventLog, RedisJobQueue, open_redis  # noqa: E402
from pipeline.apps.scale.frames import accumulate, fold  # noqa: E402
from pipeline.apps.simulator import SimulatorSettings, reference_text  # noqa: E402

TOKENS_PER_S = 300.0
REPORT_TOKENS = 600
LEASE_S = 1.0
FLUSH_MS = 50
SIM = SimulatorSettings(tokens_per_s=TOKENS_PER_S, report_tokens=REPORT_TOKENS)


@dataclass
class Job:
    request: dict[str, Any]
    kill_at: int
    """Chars of its log at which its worker is killed: in the first 90 %, so that the job is still
    running when the signal lands (a kill after the job's end would need no takeover)."""
    killed_ns: int | None = None


async def run(args: argparse.Namespace, redis: RedisServer, sim: SimulatorProcess, tmp: Path) -> int:
    config = RedisConfig(url=redis.url, lease_seconds=LEASE_S, flush_ms=FLUSH_MS, max_attempts=100)
    worker_config = write_config(
        tmp / "worker.toml", redis.url, lease_seconds=LEASE_S, flush_ms=FLUSH_MS, max_attempts=100
    )
    workers = Workers(worker_config, sim.base_url)
    try:
        async with open_redis(config) as client:
            queue, events = RedisJobQueue(client, config), RedisEventLog(client, config)
            await queue.ensure_group()
            started = time.perf_counter()
            jobs = await kill_at_offsets(args, queue, events, workers)
            elapsed = time.perf_counter() - started
            return await report(args, events, jobs, sim, elapsed)
    finally:
        workers.close()


async def kill_at_offsets(
    args: argparse.Namespace, queue: RedisJobQueue, events: RedisEventLog, workers: Workers
) -> dict[str, Job]:
    """Keeps ``in_flight`` jobs running and kills each one's worker once, at its offset."""
    rng = random.Random(args.seed)
    jobs: dict[str, Job] = {}
    pids: dict[str, int] = {}  # consumer name -> pid

    async def replace() -> None:
        """A fresh one-slot worker, started off the event loop (a start blocks ~80 ms)."""
        pid, name = await anyio.to_thread.run_sync(workers.start, "--concurrency", "1")
        pids[name] = pid

    async with anyio.create_task_group() as tg:
        for _ in range(args.in_flight + 2):
            tg.start_soon(replace)
    live: set[str] = set()
    kills = 0
    async with anyio.create_task_group() as tg:
        while kills < args.takeovers or live:
            while len(live) < args.in_flight and kills + sum(jobs[j].killed_ns is None for j in live) < (
                args.takeovers
            ):
                request = report_request(len(jobs))
                job_id = await queue.submit(request)
                jobs[job_id] = Job(request, rng.randrange(len(reference_text(request, SIM)) * 9 // 10))
                live.add(job_id)
            for job_id in list(live):
                job, state = jobs[job_id], await events.status(job_id)
                if state.get("status") in ("done", "dead"):
                    live.discard(job_id)
                elif (
                    job.killed_ns is None
                    and state.get("status") == "running"
                    and state.get("epoch") == "1"
                    and int(state.get("chars", 0)) >= job.kill_at
                    and state["owner"] in pids
                ):
                    workers.signal(pids.pop(state["owner"]), signal.SIGKILL)
                    job.killed_ns = time.perf_counter_ns()
                    kills += 1
                    tg.start_soon(replace)
            await anyio.sleep(0.01)
    return jobs


async def report(
    args: argparse.Namespace,
    events: RedisEventLog,
    jobs: dict[str, Job],
    sim: SimulatorProcess,
    elapsed: float,
) -> int:
    truths = await simulator_truths(sim.base_url)
    killed = {job_id: job for job_id, job in jobs.items() if job.killed_ns is not None}
    takeovers = lost = duplicated = late = 0
    resumed_ms: list[float] = []
    failures: list[str] = []
    for job_id, job in jobs.items():
        state = await events.status(job_id)
        entries = await events.range(job_id)
        takeovers += int(state["epoch"]) - 1
        late += job.killed_ns is not None and state["epoch"] == "1"  # it ended before the signal landed
        text = accumulate(job_id, fold(entries)).text()
        missing, extra = misaligned(reference_text(job.request, SIM), text)
        lost, duplicated = lost + missing, duplicated + extra
        if state["status"] != "done" or missing or extra:
            failures.append(f"job {job_id}: {state['status']} lost={missing} duplicated={extra}")
        resumed_ns = first_resumed_token_ns(entries, truths)
        if job.killed_ns is not None and resumed_ns is not None:
            resumed_ms.append((resumed_ns - job.killed_ns) / 1e6)
    bill = await billing(events, {job_id: job.request for job_id, job in jobs.items()}, truths, SIM)
    extra_tokens = sorted(bill.extra_by_job[job_id] for job_id in killed)
    tails = [tail for job_id in killed for tail in bill.tails_by_job[job_id]]
    resumed_ms.sort()
    for line in failures[:20]:
        print(line)
    print(
        f"jobs={len(jobs)} killed={len(killed)} in {elapsed:.1f} s; lease {LEASE_S} s, "
        f"{TOKENS_PER_S:.0f} tok/s, reports of {REPORT_TOKENS} tokens, flush {FLUSH_MS} ms"
    )
    print(
        f"death_to_first_resumed_token_ms p50={percentile(resumed_ms, 50):.0f} "
        f"p99={percentile(resumed_ms, 99):.0f} max={resumed_ms[-1]:.0f} "
        f"({len(resumed_ms)} takeovers; {len(killed) - len(resumed_ms)} had only the end left to write)"
    )
    print(
        f"extra_output_tokens_per_takeover mean={statistics.fmean(extra_tokens):.1f} "
        f"p50={percentile(extra_tokens, 50):.0f} max={extra_tokens[-1]}; "
        f"unpersisted_tail_tokens max={max(tails, default=0)}; "
        f"tokens_of_requests_killed_before_their_first_append<={bill.orphan_bound}"
    )
    if late:
        print(f"{late} kill(s) landed after the job had ended: no takeover was needed")
    print(
        f"takeovers={takeovers} lost_chars={lost} duplicated_chars={duplicated} "
        f"extra_output_tokens_max={extra_tokens[-1]}"
    )
    return 1 if failures or takeovers + late != args.takeovers else 0


def first_resumed_token_ns(entries: list[Any], truths: dict[str, dict[str, Any]]) -> int | None:
    """When the simulator sent the first text delta of the first request made under epoch 2 or
    later that sent one (on a loaded machine a request can be cut before it: its worker lost the job).

    None when there was none: the log already held the model's ``stop_reason`` (killed between
    the last append and the ``end``), so the new owner only finished the job.
    """
    for entry in entries:
        if entry.epoch >= 2 and entry.frame.event == "rillet.headers":
            truth = truths[json.loads(entry.frame.data)["request_id"]]
            sent = [e["sent_ns"] for e in truth["events"] if e["type"] == "content_block_delta"]
            if sent:  # else that request was cut before its first delta (its worker lost the job)
                return min(sent)
    return None


def main(args: argparse.Namespace) -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_and_simulator(
            Path(tmp), "--tokens-per-s", str(TOKENS_PER_S), "--report-tokens", str(REPORT_TOKENS)
        ) as (redis, sim),
    ):
        return anyio.run(run, args, redis, sim, Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--takeovers", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=6, help="jobs running at once")
    parser.add_argument("--seed", type=int, default=0)
    sys.exit(main(parser.parse_args()))
