"""Finished jobs leave nothing behind: once ``ttl_finished`` has passed, Redis is back to its baseline.

A job's hash and log expire together after its ``end`` (``ttl_finished``), its queue entry is
deleted when it is acknowledged, and nothing else is written per job. Measured with ``INFO memory``
(``used_memory`` less the client buffers, which follow the number of connections, not the data),
the key count and the queue stream's ``MEMORY USAGE``.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import coredis
import pytest
from scale_harness import RedisServer, Workers, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 200
TTL_FINISHED = 2
SLACK_BYTES = 4 * 1024
"""Measured within ±1 KiB over four rounds; one finished job's log and hash alone are several KiB."""


async def memory(redis: coredis.Redis[bytes]) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


async def wait_keys(redis: coredis.Redis[bytes], count: int, within: float) -> None:
    with anyio.fail_after(within):
        while await redis.dbsize() > count:  # noqa: ASYNC110 (keys expiring inside Redis)
            await anyio.sleep(0.1)


async def test_memory_returns_to_baseline_after_the_finished_ttl(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """200 finished reports: every key gone and memory within 4 KiB of the baseline after the TTL.

    The baseline is taken after a first round of the same 200 jobs has come and gone, so what
    Redis sizes once and keeps is in it: its expires table, for one. Redis also keeps a ~20 KiB
    latency histogram for each command the first time it runs: a command only the second round
    needs (a lease renewed late on a loaded machine) would read as a leak, so tracking is off.
    """
    queue, events = scale
    redis = events.redis
    await redis.config_set({"latency-tracking": "no"})
    base_url = simulator_process("--report-tokens", "300")  # type: ignore[operator]
    config = write_config(
        tmp_path / "worker.toml", redis_server.url, lease_seconds=2.0, flush_ms=20, ttl_finished=TTL_FINISHED
    )

    async def round_of_jobs() -> tuple[dict[str, dict[str, str]], int]:
        jobs = [await queue.submit(report_request(i, max_tokens=150)) for i in range(JOBS)]
        states = await wait_finished(events, jobs, within=90)
        peak = await memory(redis)
        await wait_keys(redis, 1, within=TTL_FINISHED + 10)  # the queue stream only
        return states, peak

    workers = Workers(config, base_url)
    try:
        workers.start("--concurrency", "8")
        await round_of_jobs()
        queue_bytes = await redis.memory_usage(queue.keys.jobs)
        baseline = await memory(redis)
        states, peak = await round_of_jobs()
        after = await memory(redis)
    finally:
        workers.close()
    assert all(state["status"] == "done" for state in states.values())
    assert await redis.dbsize() == 1
    assert await redis.memory_usage(queue.keys.jobs) == queue_bytes
    print(f"baseline={baseline} when_the_last_ended={peak} after_ttl={after} delta={after - baseline} bytes")
    assert peak - baseline > JOBS * 1024
    assert after - baseline <= SLACK_BYTES
