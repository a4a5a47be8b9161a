"""``rillet serve --redis``: replicas serving jobs from their Redis logs, to readers that move between them.

Real parts on loopback: a ``redis-server`` with AOF, the simulator process, ``rillet worker``
processes, and replicas (uvicorn in this event loop) read over HTTP as EventSource would.
"""

from __future__ import annotations

import functools
from pathlib import Path

import anyio
import httpx2
import pytest
from replica_harness import SseReader, job_request, seq_of
from scale_harness import MODEL, RedisServer, Workers, wait_finished, write_config

from pipeline.apps.scale import RedisConfig, RedisEventLog, RedisJobQueue
from pipeline.apps.serve import ServeSettings, open_replica
from pipeline.apps.simulator import SimulatorSettings, reference_text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM = SimulatorSettings(tokens_per_s=250, report_tokens=800)
SIM_ARGS = ("--tokens-per-s", "250", "--report-tokens", "800")
SETTINGS = ServeSettings(port=0, model=MODEL, retry_ms=200)


async def start_workers(workers: Workers, count: int = 1) -> None:
    for _ in range(count):
        await anyio.to_thread.run_sync(functools.partial(workers.start, "--concurrency", "4"))


async def wait_status(events: RedisEventLog, job_id: str, field: str, at_least: int) -> int:
    """Until the job's hash says ``field`` >= ``at_least`` (another process writes it); its value."""
    with anyio.fail_after(20):
        while (value := int((await events.status(job_id)).get(field, 0))) < at_least:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return value


async def test_a_reader_moves_to_another_replica_and_misses_nothing(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """Half the events from replica A, the rest from B with ``Last-Event-ID``: the reference, once."""
    _, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    workers = Workers(write_config(tmp_path / "worker.toml", redis_server.url, flush_ms=20), base_url)
    redis = RedisConfig(url=redis_server.url)
    try:
        async with open_replica(SETTINGS, redis) as a, open_replica(SETTINGS, redis) as b:
            async with httpx2.AsyncClient(base_url=a.url) as http:
                created = await http.post("/api/streams", json={"prompt": "rivers and the land"})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            await start_workers(workers)
            reference = reference_text(job_request(await events.status(job_id)), SIM)
            first = SseReader()
            await first.read(a.url, job_id, stop_after_chars=len(reference) // 2)
            second = SseReader()
            await second.read(b.url, job_id, headers={"last-event-id": first.ids()[-1]})
            huge = SseReader()  # past int()'s 4,300 digits: malformed, so from the start, not a 500
            await huge.read(b.url, job_id, headers={"last-event-id": "9" * 5000 + "-1"})
            async with httpx2.AsyncClient(base_url=b.url) as http:
                state = (await http.get(f"/api/streams/{job_id}")).json()
                cancel = await http.post(f"/api/streams/{job_id}/cancel")
    finally:
        workers.close()
    assert first.status == second.status == huge.status == 200
    assert huge.text() == reference
    assert second.events[0].type != "reset"
    assert len(first.text()) < len(reference)
    assert first.text() + second.text() == reference
    assert [event.type for event in first.events + second.events].count("end") == 1
    assert second.events[-1].type == "end"
    seqs = [seq_of(event) for event in first.events + second.events]
    assert seqs == sorted(set(seqs)), "every log entry once, in order"
    assert state["state"] == "ended"
    assert state["outcome"] == "completed"
    assert state["text"] == reference
    assert state["last_event_id"] == second.ids()[-1]
    assert cancel.status_code == 202, "a job already ended answers as rillet serve does"
    assert cancel.json() == {"id": job_id, "state": "ended"}


async def test_a_cursor_lost_with_redis_gets_reset_and_the_right_text(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """Redis ``kill -9``, restarted without its last writes: cursors in the lost tail get ``reset``.

    One reader stays attached to replica A through the crash; another comes to replica B after it
    with a ``Last-Event-ID`` from the lost tail. Both end with the reference text and one ``end``.
    """
    queue, events = scale
    base_url = simulator_process("--tokens-per-s", "200", "--report-tokens", "1500")  # type: ignore[operator]
    sim = SimulatorSettings(tokens_per_s=200, report_tokens=1500)
    config = write_config(tmp_path / "worker.toml", redis_server.url, lease_seconds=4.0, flush_ms=50)
    request = {"model": MODEL, "max_tokens": 4000, "messages": [{"role": "user", "content": "deltas"}]}
    job_id = await queue.submit(request)
    reference = reference_text(request, sim)
    workers = Workers(config, base_url)
    redis = RedisConfig(url=redis_server.url)
    attached = SseReader()
    later = SseReader()
    try:
        async with open_replica(SETTINGS, redis) as a, open_replica(SETTINGS, redis) as b:
            await start_workers(workers)
            durable_seq = await wait_status(events, job_id, "last_seq", 5)
            durable_bytes = redis_server.aof_size()
            async with anyio.create_task_group() as tg:
                tg.start_soon(attached.read, a.url, job_id)
                attached.until_seq = await wait_status(events, job_id, "last_seq", durable_seq + 10)
                with anyio.fail_after(10):
                    await attached.seen.wait()
                lost_id = attached.ids()[-1]
                await anyio.to_thread.run_sync(redis_server.restart, durable_bytes)
                await later.read(b.url, job_id, headers={"last-event-id": lost_id})
            counts_a, counts_b = a.streams.counts(), b.streams.counts()
        await wait_finished(events, [job_id], within=30)
    finally:
        workers.close()
    assert seq_of_id(lost_id) > durable_seq
    assert not await events.has(job_id, lost_id), "the cursor's entry was lost with Redis's tail"
    for reader in (attached, later):
        assert len(reader.named("reset")) == 1
        assert reader.text() == reference
        assert len(reader.named("end")) == 1
        assert reader.events[-1].type == "end"
    assert later.events[0].type == "reset"
    assert counts_a.log_reloads >= 1
    assert counts_a.resets_total == counts_b.resets_total == 1


def seq_of_id(log_id: str) -> int:
    return int(log_id.split("-")[0])


async def test_one_blocking_reader_serves_every_browser(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """Eight readers over two jobs: one ``XREAD`` connection in Redis's client list, one reader task."""
    queue, _ = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    workers = Workers(write_config(tmp_path / "worker.toml", redis_server.url, flush_ms=20), base_url)
    requests = [
        {"model": MODEL, "max_tokens": 4000, "messages": [{"role": "user", "content": f"topic {i}"}]}
        for i in range(2)
    ]
    jobs = [await queue.submit(request) for request in requests]
    readers = [SseReader() for _ in range(8)]
    try:
        async with open_replica(SETTINGS, RedisConfig(url=redis_server.url)) as replica:
            async with anyio.create_task_group() as tg:
                for index, reader in enumerate(readers):
                    tg.start_soon(reader.read, replica.url, jobs[index % 2])
                with anyio.fail_after(10):
                    while replica.streams.counts().connections < len(readers):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                counts = replica.streams.counts()
                clients = await queue.redis.client_list()
                await start_workers(workers)
    finally:
        workers.close()
    blocking = [client for client in clients if client.get("cmd") == "xread"]
    assert len(blocking) == 1, clients
    assert counts.log_readers == 1
    assert counts.followed_logs == 2
    for index, reader in enumerate(readers):
        assert reader.text() == reference_text(requests[index % 2], SIM)
        assert len(reader.named("end")) == 1
