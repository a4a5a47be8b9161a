"""A replica stopped (SIGTERM's path: its server's shutdown) under a reader: the reader gets an
``end`` frame with outcome ``shutdown``, reconnects to another replica with its ``Last-Event-ID``,
and gets the rest of the report and the job's real ``end``.

Real parts: ``redis-server``, the simulator process, a ``rillet worker`` process, two replicas
(uvicorn in this event loop) read over loopback HTTP by the browser-exact event-stream parser.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import anyio
import httpx2
import pytest
from replica_harness import SseReader, job_request
from scale_harness import MODEL, RedisServer, Workers, write_config

from pipeline.apps.scale import RedisConfig, RedisEventLog, RedisJobQueue
from pipeline.apps.serve import ServeSettings, open_replica
from pipeline.apps.simulator import SimulatorSettings, reference_text

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM = SimulatorSettings(tokens_per_s=250, report_tokens=800)
SIM_ARGS = ("--tokens-per-s", "250", "--report-tokens", "800")
SETTINGS = ServeSettings(port=0, model=MODEL, retry_ms=200)


async def test_a_reader_of_a_stopping_replica_gets_shutdown_then_the_real_end_elsewhere(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    _, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    workers = Workers(write_config(tmp_path / "worker.toml", redis_server.url, flush_ms=20), base_url)
    redis = RedisConfig(url=redis_server.url)
    first, second = SseReader(), SseReader()
    try:
        done = anyio.Event()

        async def read_first(url: str, job_id: str) -> None:
            await first.read(url, job_id)
            done.set()

        async with open_replica(SETTINGS, redis) as b, anyio.create_task_group() as tg:
            async with open_replica(SETTINGS, redis) as a:
                async with httpx2.AsyncClient(base_url=a.url) as http:
                    created = await http.post("/api/streams", json={"prompt": "rivers and the land"})
                job_id = created.json()["id"]
                await anyio.to_thread.run_sync(functools.partial(workers.start, "--concurrency", "2"))
                reference = reference_text(job_request(await events.status(job_id)), SIM)
                tg.start_soon(read_first, a.url, job_id)
                with anyio.fail_after(30):
                    while len(first.text()) < len(reference) // 3:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
            # replica A has shut down, as on SIGTERM
            with anyio.fail_after(30):
                await done.wait()
            await second.read(b.url, job_id, headers={"last-event-id": first.events[-1].last_event_id})
    finally:
        workers.close()
    shutdown = first.events[-1]
    assert shutdown.type == "end"
    assert json.loads(shutdown.data)["outcome"] == "shutdown"
    assert shutdown.last_event_id == first.events[-2].last_event_id
    assert len(first.text()) < len(reference)
    assert second.status == 200
    assert first.text() + second.text() == reference
    assert second.events[-1].type == "end"
    assert json.loads(second.events[-1].data)["outcome"] == "completed"
