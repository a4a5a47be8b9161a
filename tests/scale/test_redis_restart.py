"""Redis itself killed with SIGKILL mid-run and restarted from its AOF: the workers ride it out.

Every worker call retries with backoff while Redis is away. A ``kill -9`` of Redis alone loses
nothing it acknowledged (its AOF writes are in the page cache even before their fsync); a machine
crash can lose the un-fsynced tail, simulated by cutting the AOF back. A worker ahead of such a log
is refused (``Lost``) and takes its job again from what the log kept. Either way every report ends
exactly as the uninterrupted reference, with one ``end``, and nothing durable is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from scale_harness import (
    RedisServer,
    Workers,
    check_job,
    report_request,
    wait_finished,
    write_config,
)

from pipeline.apps.scale import LogEntry, RedisEventLog, RedisJobQueue
from pipeline.apps.simulator import SimulatorSettings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM = SimulatorSettings(tokens_per_s=150, report_tokens=600)
SIM_ARGS = ("--tokens-per-s", "150", "--report-tokens", "600")
JOBS = 6


async def logs(events: RedisEventLog, jobs: list[str]) -> dict[str, set[LogEntry]]:
    return {job: set(await events.range(job)) for job in jobs}


async def wait_chars(events: RedisEventLog, jobs: list[str], at_least: dict[str, int], within: float) -> None:
    """Until every job is finished or has persisted the chars given for it."""
    with anyio.fail_after(within):
        while True:
            states = [await events.status(job) for job in jobs]
            if all(
                s.get("status") == "done" or int(s.get("chars", 0)) >= at_least[job]
                for job, s in zip(jobs, states, strict=True)
            ):
                return
            await anyio.sleep(0.02)


async def wait_appending(events: RedisEventLog, jobs: list[str], seqs: dict[str, int], within: float) -> None:
    """Until every job is finished or has appended past the seq given for it."""
    with anyio.fail_after(within):
        while True:
            states = [await events.status(job) for job in jobs]
            if all(
                s.get("status") == "done" or int(s.get("last_seq", 0)) > seqs[job]
                for job, s in zip(jobs, states, strict=True)
            ):
                return
            await anyio.sleep(0.01)


@pytest.mark.parametrize(
    ("redis_server", "tail_lost"), [("always", False), ("everysec", True)], indirect=["redis_server"]
)
async def test_a_redis_killed_and_restarted_loses_nothing_durable(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    tail_lost: bool,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """Exact reports, one ``end`` each; every acknowledged append survives, or only a lost tail is lost.

    ``tail_lost`` cuts the AOF back by about two seconds of writes before the restart, which is what
    ``everysec`` may lose when the machine (not only Redis) goes down: the workers are then ahead
    of the logs, are refused, and take their jobs again from what the logs kept.
    """
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    # A lease well past the outage: jobs stay with their workers unless a worker stops renewing.
    config = write_config(
        tmp_path / "worker.toml", redis_server.url, lease_seconds=4.0, flush_ms=50, max_attempts=100
    )
    requests = {await queue.submit(report_request(i)): report_request(i) for i in range(JOBS)}
    jobs = list(requests)
    workers = Workers(config, base_url)
    try:
        for _ in range(2):
            workers.start("--concurrency", str(JOBS // 2))
        await wait_chars(events, jobs, dict.fromkeys(jobs, 200), within=20)
        durable = await logs(events, jobs)
        durable_bytes = redis_server.aof_size()
        chars = {job: int((await events.status(job)).get("chars", 0)) for job in jobs}
        await wait_chars(events, jobs, {job: chars[job] + 1200 for job in jobs}, within=20)
        acknowledged = await logs(events, jobs)
        restart_s = redis_server.restart(durable_bytes if tail_lost else None)
        after_restart = await logs(events, jobs)
        seqs = {job: int((await events.status(job)).get("last_seq", 0)) for job in jobs}
        restarted = time.perf_counter()
        await wait_appending(events, jobs, seqs, within=30)
        flowing_s = time.perf_counter() - restarted
        states = await wait_finished(events, jobs, within=60)
    finally:
        workers.close()
    lost = sum(len(acknowledged[job] - after_restart[job]) for job in jobs)
    final = await logs(events, jobs)
    retaken = 0
    for job in jobs:
        check = await check_job(events, job, requests[job], SIM)
        assert states[job]["status"] == "done"
        assert check.text == check.reference
        assert check.ends == 1
        assert check.ids_increasing
        assert durable[job] <= after_restart[job] <= final[job]
        retaken += len(check.epochs) > 1
    assert (lost > 0) is tail_lost
    assert (retaken > 0) is tail_lost, "a worker ahead of its log must take the job again"
    print(
        f"appendfsync={redis_server.appendfsync} tail_lost={tail_lost} restart_s={restart_s:.2f} "
        f"appends_again_after_s={flowing_s:.2f} acknowledged_entries_lost={lost} jobs_taken_again={retaken}"
    )
