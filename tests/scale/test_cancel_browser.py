"""The page's Stop button on a ``rillet serve --redis`` process: a queued job, then a running one.

Chromium, a replica process, ``rillet worker`` processes and the simulator, all on loopback. The
queued job's ``end`` frame is written by the replica's cancel (a job that never ran has no usage,
cost or timings), the running one's by its worker; the page handles both without an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from playwright.sync_api import expect
from replica_harness import ReplicaProcess
from scale_harness import RedisServer, Workers, write_config

from pipeline.apps.scale import RedisConfig, RedisEventLog, open_redis
from pipeline.apps.scale.frames import accumulate, fold
from tests.serve.test_browser import (  # noqa: F401 (browser and watched are fixtures)
    END,
    Watched,
    browser,
    output_text,
    start_report,
    wait_for_text,
    watched,
)

pytestmark = pytest.mark.slow


def job_record(redis_url: str, job_id: str) -> tuple[dict[str, str], str]:
    """The job's status hash and its log's text, read in a thread of its own (Playwright runs a loop here)."""

    async def read() -> tuple[dict[str, str], str]:
        config = RedisConfig(url=redis_url)
        async with open_redis(config) as client:
            events = RedisEventLog(client, config)
            return await events.status(job_id), accumulate(job_id, fold(await events.range(job_id))).text()

    with start_blocking_portal(backend="asyncio") as portal:
        return portal.call(read)


def test_stop_on_a_replica_for_a_queued_and_a_running_job(
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
    watched: Watched,  # noqa: F811
) -> None:
    base_url = simulator_process("--tokens-per-s", "150", "--report-tokens", "3000")  # type: ignore[operator]
    config = write_config(tmp_path / "replica.toml", redis_server.url, lease_seconds=60.0, flush_ms=20)
    replica = ReplicaProcess(config, redis_server.url)
    workers = Workers(config, base_url)
    page = watched.page
    outcome = page.get_by_test_id("outcome")
    try:
        replica.wait_ready()
        queued = start_report(page, f"{replica.url}/?max_tokens=4000")
        page.get_by_test_id("stop").click()
        expect(outcome).to_have_text("cancelled", timeout=END)
        queued_text = output_text(page)
        workers.start("--concurrency", "1")
        running = start_report(page, f"{replica.url}/?max_tokens=4000")
        wait_for_text(page, 200)
        page.get_by_test_id("stop").click()
        expect(outcome).to_have_text("cancelled", timeout=END)
        expect(page.get_by_test_id("stop")).to_be_disabled()
        running_text = output_text(page)
    finally:
        workers.close()
        replica.close()
    queued_fields, queued_log = job_record(redis_server.url, queued)
    assert (queued_fields["status"], queued_fields["epoch"]) == ("cancelled", "0")
    assert queued_text == queued_log == ""
    running_fields, running_log = job_record(redis_server.url, running)
    assert running_fields["status"] == "cancelled"
    assert running_text == running_log
    assert 200 <= len(running_text) < 3000 * 3
    assert watched.problems == []
