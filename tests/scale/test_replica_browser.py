"""Chromium pages on two ``rillet serve --redis`` processes behind a proxy; one replica is killed mid-report.

The pages' EventSource URLs are same-origin, so a load balancer is what moves them: the proxy sends
each connection to the first replica that accepts it. After ``kill -9`` of that replica, every
page reconnects through the proxy to the other one with its ``Last-Event-ID`` (a log id) and
ends with the simulator's reference text, each character once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from playwright.sync_api import Browser, expect, sync_playwright
from replica_harness import ReplicaProcess, job_request, tcp_proxy
from scale_harness import RedisServer, Workers, write_config

from pipeline.apps.scale import RedisConfig, RedisEventLog, open_redis
from pipeline.apps.simulator import SimulatorSettings, reference_text
from tests.serve.test_browser import CHROMIUM, CLOSED_NETWORK, END, start_report

pytestmark = pytest.mark.slow

SIM = SimulatorSettings(tokens_per_s=200, report_tokens=900)
PAGES = 3


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[CLOSED_NETWORK])
        yield launched
        launched.close()


def job_fields(redis_url: str, job_ids: list[str]) -> dict[str, dict[str, str]]:
    """Each job's status hash, read in a thread of its own (Playwright's sync API runs a loop in this one)."""

    async def read() -> dict[str, dict[str, str]]:
        config = RedisConfig(url=redis_url)
        async with open_redis(config) as client:
            events = RedisEventLog(client, config)
            return {job: await events.status(job) for job in job_ids}

    with start_blocking_portal(backend="asyncio") as portal:
        return portal.call(read)


def test_pages_survive_the_death_of_their_replica(
    redis_server: RedisServer, simulator_process: object, tmp_path: Path, browser: Browser
) -> None:
    base_url = simulator_process("--tokens-per-s", "200", "--report-tokens", "900")  # type: ignore[operator]
    config = write_config(tmp_path / "replica.toml", redis_server.url, flush_ms=20)
    replicas = [ReplicaProcess(config, redis_server.url) for _ in range(2)]
    workers = Workers(config, base_url)
    context = browser.new_context()
    try:
        for replica in replicas:
            replica.wait_ready()
        workers.start("--concurrency", str(PAGES))
        with tcp_proxy([replica.port for replica in replicas]) as proxy:
            pages = [context.new_page() for _ in range(PAGES)]
            jobs = [start_report(page, f"{proxy}/?max_tokens=4000") for page in pages]
            for page in pages:
                expect(page.get_by_test_id("output")).to_have_text(re.compile(r"[\s\S]{200}"), timeout=END)
            replicas[0].kill()
            for page in pages:
                expect(page.get_by_test_id("outcome")).to_have_text("completed", timeout=END)
            texts = [
                page.get_by_test_id("output").evaluate("element => element.textContent") for page in pages
            ]
            reports = [page.get_by_test_id("report").locator("p").count() for page in pages]
    finally:
        context.close()
        workers.close()
        for replica in replicas:
            replica.close()
    fields = job_fields(redis_server.url, jobs)
    for job, text, paragraphs in zip(jobs, texts, reports, strict=True):
        reference = reference_text(job_request(fields[job]), SIM)
        assert text == reference
        assert paragraphs > 1, "the finished report came from the surviving replica"
        assert fields[job]["status"] == "done"
