"""Job ids are checked where they come in, and where a worker meets one: never a path.

Real parts: ``redis-server``, the simulator process, ``rillet worker`` processes writing reports
to a folder, and ``rillet submit`` / ``rillet jobs`` as subprocesses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio
import pytest
from scale_harness import REPO, RedisServer, Workers, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from pipeline.apps.scale.checks import JOB_ID_PATTERN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def raw_job(queue: RedisJobQueue, job_id: str) -> None:
    """A job put in Redis by hand (as anyone who can write to it could), with any id at all."""
    request = json.dumps(report_request(1, max_tokens=50))
    fields = {"request": request, "status": "queued", "epoch": "0", "created": str(time.time())}
    await queue.redis.hset(queue.keys.job(job_id), fields)
    await queue.redis.xadd(queue.keys.jobs, {"job": job_id})


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("job_id", ["../escaped", "/tmp/rillet-absolute-id", ".hidden", "a{b}", ""])
async def test_submit_refuses_an_unsafe_id(redis_server: RedisServer, job_id: str) -> None:
    done = await anyio.run_process(
        [sys.executable, "-m", "pipeline.apps", "submit", "--redis", redis_server.url, "--id", job_id],
        cwd=REPO,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert stderr.count("\n") == 1
    assert JOB_ID_PATTERN in stderr
    assert "Traceback" not in stderr
    assert not done.stdout


async def test_a_worker_dead_letters_an_unsafe_id_and_writes_no_file(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    queue, events = scale
    base_url = simulator_process("--tokens-per-s", "2000", "--report-tokens", "100")  # type: ignore[operator]
    out = tmp_path / "reports"
    absolute = tmp_path / "absolute"
    unsafe = ["../escaped", str(absolute)]
    for job_id in unsafe:
        await raw_job(queue, job_id)
    good = await queue.submit(report_request(2, max_tokens=50), "good-1.x_y")
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=1.0, flush_ms=20)
    workers = Workers(config, base_url)
    try:
        workers.start("--out-dir", str(out))
        await wait_finished(events, [good], within=60)
        with anyio.fail_after(30):
            while await queue.redis.xlen(queue.keys.dead) < len(unsafe):  # noqa: ASYNC110
                await anyio.sleep(0.05)
    finally:
        workers.close()
    dead = {
        entry.field_values[b"job"].decode(): entry.field_values[b"reason"].decode()
        for entry in await queue.redis.xrange(queue.keys.dead)
    }
    assert dead.keys() == set(unsafe)
    for job_id in unsafe:
        assert JOB_ID_PATTERN in dead[job_id]
    assert names(tmp_path) == ["redis", "reports", "worker.toml"]
    assert names(out) == ["good-1.x_y.md"]
    assert (await queue.redis.xpending(queue.keys.jobs, "workers")).pending == 0


async def test_rillet_jobs_shows_ids_with_braces_and_slashes(
    scale: tuple[RedisJobQueue, RedisEventLog], redis_server: RedisServer
) -> None:
    """Ids written to Redis by hand, which no check let in, are still shown as they are."""
    queue, _ = scale
    odd = ["a}b", "{x}", "dir/name", "%s{0}"]
    for job_id in odd:
        await raw_job(queue, job_id)
    done = await anyio.run_process(
        [sys.executable, "-m", "pipeline.apps", "jobs", "--redis", redis_server.url], cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    shown = {line.split("  ")[0] for line in done.stdout.decode().splitlines()[2:]}
    assert shown == set(odd)
