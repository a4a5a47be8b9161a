"""A worker with ``[otel]`` traces each job like ``rillet run`` does, exporting where ``OTEL_*`` says.

A real worker process, Redis and simulator; the OTLP/HTTP exports go to a receiver on loopback.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from scale_harness import (
    MODEL,
    RedisServer,
    SimulatorProcess,
    Workers,
    report_request,
    wait_finished,
    write_config,
)

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from tests.otlp_collector import Collector, collector

__all__ = ["collector"]  # the fixture, imported to be used here

pytestmark = pytest.mark.anyio

JOBS = 2
GENAI_METRICS = {
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.duration",
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
}


async def test_a_worker_exports_one_trace_per_job_to_the_otlp_endpoint_of_the_environment(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    collector: Collector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue, events = scale
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    config = write_config(tmp_path / "worker.toml", redis_server.url)
    with config.open("a") as file:
        file.write("\n[otel]\nenabled = true\n")
    simulator = SimulatorProcess("--tokens-per-s", "4000", "--ttft-ms", "30")
    workers = Workers(config, simulator.base_url)
    try:
        await anyio.to_thread.run_sync(workers.start, "--concurrency", "2")
        job_ids = [await queue.submit(report_request(n, max_tokens=300)) for n in range(JOBS)]
        await wait_finished(events, job_ids, within=60)
        exported: tuple[int, set[str]] | None = None
        with anyio.move_on_after(20):
            while exported != (JOBS, GENAI_METRICS):
                await anyio.sleep(0.1)
                streams = [span for span in collector.spans() if span.name == f"chat {MODEL}"]
                exported = (len(streams), collector.metric_names())
    finally:
        workers.close()
        simulator.close()
    spans = collector.spans()
    streams = {span.span_id: span for span in spans if span.name == f"chat {MODEL}"}
    assert len(streams) == JOBS
    job_of = {
        span_id: {kv.key: kv.value.string_value for kv in span.attributes}["rillet.stream_id"]
        for span_id, span in streams.items()
    }
    assert sorted(job_of.values()) == sorted(job_ids)
    attempts = [span for span in spans if span.name == "anthropic.messages.create"]
    assert sorted(job_of[span.parent_span_id] for span in attempts) == sorted(job_ids)
    for span in attempts:
        assert span.trace_id == streams[span.parent_span_id].trace_id
    assert collector.metric_names() == GENAI_METRICS
