"""A worker stopped (SIGSTOP) past its lease and then continued is fenced: it writes nothing, stops paying."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import anyio
import pytest
from scale_harness import (
    RedisServer,
    Workers,
    check_job,
    report_request,
    simulator_truths,
    wait_finished,
    wait_progress,
    write_config,
)

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from pipeline.apps.simulator import SimulatorSettings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM = SimulatorSettings(tokens_per_s=100, report_tokens=600)


async def test_a_stalled_worker_that_wakes_up_is_fenced(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """No entry of the old epoch lands after the takeover, and its upstream request is closed within 2 s."""
    queue, events = scale
    base_url = simulator_process("--tokens-per-s", "100", "--report-tokens", "600")  # type: ignore[operator]
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=1.0, flush_ms=50)
    request = report_request(0)
    job = await queue.submit(request)
    workers = Workers(config, base_url)
    try:
        first, name = workers.start("--concurrency", "1")
        assert await wait_progress(events, [job], name, 400, within=10)
        workers.signal(first, signal.SIGSTOP)
        _, second = workers.start("--concurrency", "1")
        with anyio.fail_after(10):
            while (await events.status(job)).get("owner") != second:  # noqa: ASYNC110 (another process)
                await anyio.sleep(0.05)
        assert await wait_progress(events, [job], second, 1, within=10)
        woke_ns = time.perf_counter_ns()
        workers.signal(first, signal.SIGCONT)
        states = await wait_finished(events, [job], within=30)
    finally:
        workers.close()
    assert states[job]["status"] == "done"
    check = await check_job(events, job, request, SIM)
    assert check.text == check.reference
    assert check.ends == 1
    assert check.ids_increasing
    entries = await events.range(job)
    takeover = min(entry.seq for entry in entries if entry.epoch == 2)
    assert all(entry.seq < takeover for entry in entries if entry.epoch == 1)
    first_request = next(
        json.loads(entry.frame.data)["request_id"]
        for entry in entries
        if entry.frame.event == "rillet.headers"
    )
    truth = (await simulator_truths(base_url))[first_request]
    assert truth["disconnected"]
    assert not truth["completed"]
    assert (truth["finished_ns"] - woke_ns) / 1e9 < 2.0
