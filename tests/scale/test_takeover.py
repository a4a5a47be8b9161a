"""Workers killed with SIGKILL at seeded random moments: others finish every job, exactly, once.

Real processes on loopback: a ``redis-server`` with AOF, the simulator, and ``rillet worker``
processes (``python -m pipeline.scale worker``). Leases are 1 s so a takeover costs about 1.3 s.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import anyio
import pytest
from scale_harness import (
    RedisServer,
    billing,
    check_job,
    end_process,
    report_request,
    simulator_truths,
    start_workers,
    wait_finished,
    wait_progress,
    write_config,
)

from pipeline.scale import RedisEventLog, RedisJobQueue
from pipeline.simulator import SimulatorSettings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKENS_PER_S = 120.0
REPORT_TOKENS = 600
SIM = SimulatorSettings(tokens_per_s=TOKENS_PER_S, report_tokens=REPORT_TOKENS)
SIM_ARGS = ("--tokens-per-s", str(TOKENS_PER_S), "--report-tokens", str(REPORT_TOKENS))
FLUSH_MS = 50
TAIL_TOKENS = TOKENS_PER_S * (FLUSH_MS / 1000 + 0.25) + 12
"""The un-persisted tail a takeover may pay twice: a coalescing window, kill detection, a delta or two."""


async def test_twenty_kills_lose_and_duplicate_nothing(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """kill -9 at random offsets: final text == reference, one ``end``, ids increasing, tail paid at most."""
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=1.0, flush_ms=FLUSH_MS)
    jobs = {await queue.submit(report_request(i)): report_request(i) for i in range(24)}
    rng = random.Random(20240611)
    kills = 0
    workers = start_workers(config, base_url, 2, "--concurrency", "4")
    try:
        while kills < 20:
            victims, workers = workers, start_workers(config, base_url, 2, "--concurrency", "4")
            offset = rng.randint(0, 2500)
            for victim, name in victims:
                if await wait_progress(events, list(jobs), name, offset, timeout=5):
                    kills += 1
                end_process(victim, signal.SIGKILL)
        states = await wait_finished(events, list(jobs), timeout=60)
    finally:
        for worker, _ in [*victims, *workers]:
            end_process(worker, signal.SIGKILL)
    takeovers = sum(int(state["epoch"]) - 1 for state in states.values())
    assert takeovers >= 20, f"only {takeovers} takeovers: the kills missed the running jobs"
    for job_id, request in jobs.items():
        check = await check_job(events, job_id, request, SIM)
        assert states[job_id]["status"] == "done"
        assert check.text == check.reference
        assert check.ends == 1
        assert check.ids_increasing
    bill = await billing(events, jobs, await simulator_truths(base_url), SIM)
    for job_id, extra in bill.extra_by_job.items():
        assert extra <= (int(states[job_id]["epoch"]) - 1) * TAIL_TOKENS, (job_id, extra)
