"""Cancelling Redis jobs: through a replica's ``POST /api/streams/{id}/cancel``, with ``rillet jobs ID
--cancel``, and from the job's record alone when a worker missed the announcement.

Real parts on loopback: a ``redis-server`` with AOF, the simulator process, ``rillet worker``
processes, a replica (uvicorn in this event loop) and the CLI as a subprocess.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from subprocess import CompletedProcess

import anyio
import httpx2
import pytest
from coredis.tokens import PureToken
from replica_harness import SseReader
from scale_harness import (
    MODEL,
    REPO,
    RedisServer,
    Workers,
    report_request,
    simulator_truths,
    wait_finished,
    wait_progress,
    write_config,
)

from pipeline.apps.scale import LogEntry, RedisConfig, RedisEventLog, RedisJobQueue
from pipeline.apps.scale.frames import accumulate, fold
from pipeline.apps.serve import ServeSettings, open_replica
from pipeline.apps.simulator import SimulatorSettings, reference_text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM = SimulatorSettings(tokens_per_s=150, report_tokens=3000)
SIM_ARGS = ("--tokens-per-s", "150", "--report-tokens", "3000")
"""A report of about 20 s: any job that ends within the tests' bounds was cut short."""
SETTINGS = ServeSettings(port=0, model=MODEL, retry_ms=200)


def ends(entries: list[LogEntry]) -> list[dict[str, object]]:
    return [json.loads(entry.frame.data) for entry in entries if entry.frame.event == "end"]


def request_ids(entries: list[LogEntry]) -> list[str]:
    return [
        json.loads(entry.frame.data)["request_id"]
        for entry in entries
        if entry.frame.event == "rillet.headers"
    ]


async def wait_status(events: RedisEventLog, job_id: str, status: str, within: float) -> dict[str, str]:
    with anyio.fail_after(within):
        while (fields := await events.status(job_id)).get("status") != status:  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return fields


async def wait_settled(queue: RedisJobQueue, within: float) -> None:
    """Until no delivery is leased: a job is acked (or requeued) only after its status is written."""
    with anyio.fail_after(within):
        while (await queue.redis.xpending(queue.keys.jobs, "workers")).pending:  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def rillet_jobs(
    redis_url: str, *args: str, into: list[CompletedProcess[bytes]] | None = None
) -> CompletedProcess[bytes]:
    """``rillet jobs ARGS`` as a subprocess; its result, also appended to ``into`` (for a task)."""
    done = await anyio.run_process(
        [sys.executable, "-m", "pipeline.apps", "jobs", *args, "--redis", redis_url], cwd=REPO, check=False
    )
    if into is not None:
        into.append(done)
    return done


async def test_stop_through_a_replica_ends_the_running_job_and_keeps_its_text(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """The worker closes the upstream response; one ``end`` (cancelled); report = log text; acked once.

    The lease is 60 s, so the worker's first look at the job's record (a renewal) is 20 s away: only
    the announcement can end the job within the 8 s this test waits.
    """
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=60.0, flush_ms=20)
    workers = Workers(config, base_url)
    out_dir = tmp_path / "reports"
    reader = SseReader()
    try:
        async with (
            open_replica(SETTINGS, RedisConfig(url=redis_server.url)) as replica,
            httpx2.AsyncClient(base_url=replica.url) as http,
        ):
            created = await http.post("/api/streams", json={"prompt": "rivers and the land"})
            job_id = created.json()["id"]
            start = functools.partial(workers.start, "--out-dir", str(out_dir), "--metrics-port", "0")
            _, name = await anyio.to_thread.run_sync(start)
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader.read, replica.url, job_id)
                assert await wait_progress(events, [job_id], name, 300, within=15)
                asked = anyio.current_time()
                cancel = await http.post(f"/api/streams/{job_id}/cancel")
                fields = await wait_status(events, job_id, "cancelled", within=8)
                stopped_s = anyio.current_time() - asked
            await wait_settled(queue, within=10)
            again = await http.post(f"/api/streams/{job_id}/cancel")
            unknown = await http.post("/api/streams/no-such-job/cancel")
            state = (await http.get(f"/api/streams/{job_id}")).json()
        metrics_url = re.search(r"metrics on (http://\S+)", "".join(workers.log))
        assert metrics_url is not None
        metrics = httpx2.get(metrics_url.group(1)).text
    finally:
        workers.close()
    print(f"cancel_to_status_cancelled_s={stopped_s:.3f}")
    assert cancel.status_code == 202
    assert cancel.json() == {"id": job_id, "state": "running"}
    assert again.status_code == 202
    assert again.json() == {"id": job_id, "state": "ended"}
    assert unknown.status_code == 404
    entries = await events.range(job_id)
    text = accumulate(job_id, fold(entries)).text()
    reference = reference_text(json.loads(fields["request"]), SIM)
    assert 300 <= len(text) < len(reference)
    assert reference.startswith(text)
    assert ends(entries) == [ends(entries)[0]]
    assert entries[-1].frame.event == "end"
    assert ends(entries)[0]["outcome"] == "cancelled"
    assert ends(entries)[0]["error"] == "stopped from the browser"
    assert (fields["outcome"], fields["cancel"]) == ("cancelled", "stopped from the browser")
    marker = (
        "\n\n<!-- rillet: incomplete -->\n> **Incomplete report:** the stream ended with outcome "
        f"'cancelled': stopped from the browser, after {len(text):,} characters.\n"
    )
    assert (out_dir / f"{job_id}.md").read_text(encoding="utf-8") == text + marker
    assert reader.text() == text
    assert reader.named("end")[0].data == entries[-1].frame.data.decode()
    assert (state["state"], state["outcome"], state["text"]) == ("ended", "cancelled", text)
    final = await events.status(job_id)
    assert final["epoch"] == "1", "taken once: not retried"
    assert await queue.redis.xlen(queue.keys.jobs) == 0, "acked, not requeued"
    assert await queue.redis.xlen(queue.keys.dead) == 0
    assert 'rillet_jobs_finished_total{outcome="cancelled"} 1.0' in metrics
    [request_id] = request_ids(entries)
    truth = (await simulator_truths(base_url))[request_id]
    assert truth["disconnected"], "the upstream response was closed"
    assert not truth["completed"]


async def test_a_queued_job_is_cancelled_without_running(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """``rillet jobs ID --cancel`` before any worker: it ends at once; a worker later only acks it."""
    queue, events = scale
    base_url = simulator_process("--tokens-per-s", "2000", "--report-tokens", "200")  # type: ignore[operator]
    queued = await queue.submit(report_request(0))
    workers = Workers(write_config(tmp_path / "worker.toml", redis_server.url, flush_ms=20), base_url)
    try:
        unknowns: list[CompletedProcess[bytes]] = []
        async with anyio.create_task_group() as tg:  # each costs a 2 s start-up: two at once
            tg.start_soon(
                functools.partial(rillet_jobs, redis_server.url, "nothing", "--cancel", into=unknowns)
            )
            cancelled = await rillet_jobs(redis_server.url, queued, "--cancel")
        [unknown] = unknowns
        again = await rillet_jobs(redis_server.url, queued, "--cancel")
        fields = await events.status(queued)
        entries = await events.range(queued)
        good = await queue.submit(report_request(1))
        await anyio.to_thread.run_sync(workers.start, "--concurrency", "1")
        await wait_finished(events, [good], within=20)
        await wait_settled(queue, within=10)
    finally:
        workers.close()
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.decode() == f"job {queued}: cancelled before it started\n"
    assert again.returncode == 0
    assert again.stdout.decode() == f"job {queued}: already ended (cancelled); nothing to cancel\n"
    assert unknown.returncode == 2
    assert unknown.stdout == b""
    assert unknown.stderr.decode().count("\n") == 1
    assert unknown.stderr.decode().startswith("rillet: error: job nothing: unknown")
    assert (fields["status"], fields["cancel"]) == ("cancelled", "cancelled with rillet jobs --cancel")
    assert [entry.frame.event for entry in entries] == ["end"]
    assert ends(entries)[0]["outcome"] == "cancelled"
    assert await events.range(queued) == entries, "the worker wrote nothing for it"
    assert (await events.status(queued))["epoch"] == "0", "never taken"
    assert await queue.redis.xlen(queue.keys.jobs) == 0, "its delivery was acked"
    assert list(await simulator_truths(base_url)) == request_ids(await events.range(good))


async def test_a_worker_that_missed_the_announcement_finds_the_record(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """The ``cancel`` field alone (no message): read when the job is taken, and at the next renewal."""
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=1.0, flush_ms=20)
    taken = await queue.submit(report_request(0))
    await events.redis.hset(queue.keys.job(taken), {"cancel": "recorded before the take"})
    running = await queue.submit(report_request(1))
    workers = Workers(config, base_url)
    try:
        _, name = await anyio.to_thread.run_sync(workers.start, "--concurrency", "2")
        assert await wait_progress(events, [running], name, 100, within=15)
        await events.redis.hset(queue.keys.job(running), {"cancel": "recorded while it ran"})
        states = await wait_finished(events, [taken, running], within=10)
        await wait_settled(queue, within=10)
    finally:
        workers.close()
    assert states[taken]["status"] == states[running]["status"] == "cancelled"
    taken_entries = await events.range(taken)
    assert ends(taken_entries)[0]["error"] == "recorded before the take"
    assert request_ids(taken_entries) == [], "ended without a request"
    assert accumulate(taken, fold(taken_entries)).text() == ""
    running_entries = await events.range(running)
    assert [end["error"] for end in ends(running_entries)] == ["recorded while it ran"]
    assert reference_text(report_request(1), SIM).startswith(
        accumulate(running, fold(running_entries)).text()
    )
    truths = await simulator_truths(base_url)
    assert list(truths) == request_ids(running_entries)
    assert all(truth["disconnected"] for truth in truths.values())


async def test_a_worker_whose_subscription_broke_reads_the_records_when_it_is_back(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """A request recorded while the worker was not subscribed: its subscription comes back, and finds it.

    The field is written without an announcement, then Redis drops every pub/sub connection
    (``CLIENT KILL TYPE pubsub``); the lease is 60 s, so no renewal looks before the 8 s waited.
    """
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=60.0, flush_ms=20)
    job = await queue.submit(report_request(0))
    workers = Workers(config, base_url)
    try:
        _, name = await anyio.to_thread.run_sync(workers.start, "--concurrency", "1")
        assert await wait_progress(events, [job], name, 100, within=15)
        await events.redis.hset(queue.keys.job(job), {"cancel": "recorded while not subscribed"})
        assert await events.redis.client_kill(type_=PureToken.PUBSUB) == 1
        fields = await wait_status(events, job, "cancelled", within=8)
    finally:
        workers.close()
    assert [end["error"] for end in ends(await events.range(job))] == [fields["cancel"]]
