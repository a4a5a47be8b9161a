"""No data in Redis crashes a worker: each malformed entry, record, request or log is dead-lettered
at once with a precise reason, and the worker goes on to run a good job.

Real parts: ``redis-server``, the simulator process, a ``rillet worker`` process; the bad data is
written with plain Redis commands, as anyone who can write to Redis could.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import anyio
import pytest
from scale_harness import RedisServer, Workers, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

GOOD = json.dumps(report_request(1, max_tokens=50))

RECORDS: dict[str, dict[str, str]] = {
    "not-json": {"request": "{nope", "epoch": "0"},
    "not-an-object": {"request": "[1, 2]", "epoch": "0"},
    "model-5": {"request": json.dumps({**report_request(1), "model": 5}), "epoch": "0"},
    "no-request": {"epoch": "0"},
    "bad-epoch": {"request": GOOD, "epoch": "x1"},
    "float-epoch": {"request": GOOD, "epoch": "1.5"},
    "bad-last-seq": {"request": GOOD, "epoch": "0", "last_seq": "-"},
    "bad-log": {"request": GOOD, "epoch": "0", "last_seq": "1"},
}
REASONS = {
    "not-json": "its request is not JSON (",
    "not-an-object": "its request is a JSON list, not an object",
    "model-5": "its request's 'model' must be a non-empty string, got 5",
    "no-request": "it has no 'request' field",
    "bad-epoch": "its epoch field 'x1' is not a whole number",
    "float-epoch": "its epoch field '1.5' is not a whole number",
    "bad-last-seq": "its last_seq field '-' is not a whole number",
    "bad-log": "its log entry 1-0 lacks the 'e' or 'd' field",
}


async def test_malformed_data_is_dead_lettered_and_never_crashes_a_worker(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    queue, events = scale
    redis = queue.redis
    base_url = simulator_process("--tokens-per-s", "2000", "--report-tokens", "100")  # type: ignore[operator]
    entry = await redis.xadd(queue.keys.jobs, {"foo": "bar"})
    for job_id, fields in RECORDS.items():
        await redis.hset(queue.keys.job(job_id), {**fields, "status": "queued", "created": str(time.time())})
        await redis.xadd(queue.keys.jobs, {"job": job_id})
    await redis.xadd(queue.keys.log("bad-log"), {"foo": "bar"}, identifier="1-0")
    config = write_config(
        tmp_path / "worker.toml", redis_server.url, lease_seconds=1.0, flush_ms=20, max_attempts=3
    )
    workers = Workers(config, base_url)
    try:
        pid, _ = workers.start("--concurrency", "2")
        good = await queue.submit(report_request(2, max_tokens=50))
        states = await wait_finished(events, [good], within=60)
        await redis.publish(queue.keys.cancels, "not an announcement")
        await redis.publish(queue.keys.cancels, json.dumps({"job": 5}))
        with anyio.fail_after(30):
            while await redis.xlen(queue.keys.dead) < len(RECORDS) + 1:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        with anyio.fail_after(30):
            while "".join(workers.log).count("ignored a malformed cancel announcement") < 2:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        workers.signal(pid, 0)  # still alive: ProcessLookupError otherwise
        workers.signal(pid, signal.SIGTERM)
    finally:
        workers.close()
    assert states[good]["status"] == "done"
    dead = [
        (e.field_values[b"job"].decode(), e.field_values[b"reason"].decode())
        for e in await redis.xrange(queue.keys.dead)
    ]
    assert len(dead) == len(RECORDS) + 1
    reasons = dict(dead)
    assert reasons[""] == f"the queue entry {entry.decode()} has no 'job' field (its fields: 'foo')"
    for job_id, reason in REASONS.items():
        assert reason in reasons[job_id], reasons[job_id]
    for job_id in ("not-json", "model-5", "bad-log"):
        state = await events.status(job_id)
        assert (state["status"], state["epoch"]) == ("dead", "1"), "dead at the first take"
    log = "".join(workers.log)
    assert "Traceback" not in log
    assert (await redis.xpending(queue.keys.jobs, "workers")).pending == 0
