"""The metrics sink against real servers: Prometheus scrapes a running pipeline, a batch job pushes.

Streams come from the simulator through the real SDK and the real stages, so the numbers checked
here are the ones a user sees; each test compares them with the run's own ``StreamResult``s.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.events import AttemptStarted, Item, StreamEnded
from pipeline.runner import Pipeline, StreamResult
from pipeline.sink import SinkSpec
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.cost import CostStage
from pipeline.stages.latency import LatencyStage
from sinks.prometheus import PrometheusSink
from tests.conftest import free_port
from tests.integration.conftest import Server

MODEL = "claude-sonnet-4-6"
STAGES = (AccumulateStage, LatencyStage, CostStage)
SIMULATOR = SimulatorSettings(scenario="report", ttft_ms=40, tokens_per_s=1500, report_tokens=2500)
"""About two seconds a stream: long enough for a 1 s scrape interval to see the run in progress."""
BILLED_OUTPUT = (
    'sum(rillet_tokens_total{token_type="output"})'
    ' - sum(rillet_tokens_overestimated_total{token_type="output"})'
)
"""Output tokens billed: the live count, less what its estimates counted beyond the final usage."""
DEADLINE = 30.0
"""Seconds a test waits for Prometheus to have scraped what the run reported."""


def request(n: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 4000,
        "messages": [{"role": "user", "content": f"Write report number {n}."}],
    }


async def run_streams(sinks: Sequence[PrometheusSink], base_url: str, streams: int) -> list[StreamResult]:
    """Runs ``streams`` concurrent streams through one pipeline feeding ``sinks``."""
    results: list[StreamResult] = []
    client = make_client(api_key="test", base_url=base_url)
    async with client, Pipeline(client, stages=STAGES, sinks=[SinkSpec(sink) for sink in sinks]) as pipeline:

        async def one(n: int) -> None:
            results.append(await pipeline.run(request(n)))

        async with anyio.create_task_group() as tg:
            for n in range(streams):
                tg.start_soon(one, n)
    return results


def expected(results: Sequence[StreamResult]) -> dict[str, float]:
    """What the metrics must say, computed from the run's own results."""
    assert results
    assert all(r.outcome == "completed" and r.cost is not None and r.latency is not None for r in results)
    return {
        "ttft_count": sum(1 for r in results if r.latency and r.latency.to_first_delta is not None),
        "output": sum(r.cost.usage.output_tokens for r in results if r.cost),
        "input": sum(r.cost.usage.input_tokens for r in results if r.cost),
        "completed": len(results),
        "client_delay_count": sum(r.client_delay.count for r in results),
    }


async def get(url: str) -> str:
    def read() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    return await anyio.to_thread.run_sync(read)


async def query(prometheus: Server, promql: str) -> float | None:
    """One instant query; None while Prometheus has no sample for it."""
    answer = json.loads(
        await get(f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    )
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def gateway_samples(pushgateway: Server, job: str) -> dict[str, float]:
    """The gateway's samples of ``job``'s group, keyed ``name{label=value,...}`` without job/instance."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(await get(f"{pushgateway.url}/metrics")):
        for sample in family.samples:
            if sample.labels.get("job") != job:
                continue
            labels = ",".join(
                f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("job", "instance")
            )
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def eventually(check: Callable[[], Any], what: str) -> None:
    """Polls ``check`` (async, truthy when done) until it holds; fails at the deadline.

    Prometheus and the gateway cannot notify, so polling is the only way to wait for them.
    """
    with anyio.move_on_after(DEADLINE):
        while True:
            if await check():
                return
            await anyio.sleep(0.2)
    pytest.fail(f"{what} did not happen within {DEADLINE} s")


def key(name: str, **labels: str) -> str:
    """A sample's key in :func:`gateway_samples`."""
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


@pytest.mark.anyio
async def test_prometheus_scrapes_what_the_run_reported(
    start_prometheus: Callable[[Sequence[str]], Server],
) -> None:
    """Prometheus' own query API returns the TTFT count and token totals the StreamResults hold."""
    port = free_port()
    prometheus = await anyio.to_thread.run_sync(start_prometheus, [f"127.0.0.1:{port}"])
    sink = PrometheusSink(address=f"127.0.0.1:{port}")
    async with open_simulator(SIMULATOR) as sim:
        client = make_client(api_key="test", base_url=sim.base_url)
        async with client, Pipeline(client, stages=STAGES, sinks=[SinkSpec(sink)]) as pipeline:

            async def up() -> bool:
                return await query(prometheus, 'up{job="rillet"}') == 1

            await eventually(up, "a first scrape of the open sink")
            results: list[StreamResult] = []

            async def one(n: int) -> None:
                results.append(await pipeline.run(request(n)))

            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(one, n)
            want = expected(results)

            async def scraped() -> bool:
                return (
                    await query(prometheus, "sum(rillet_time_to_first_delta_seconds_count)")
                    == want["ttft_count"]
                    and await query(prometheus, BILLED_OUTPUT) == want["output"]
                    and await query(prometheus, 'sum(rillet_tokens_total{token_type="input"})')
                    == want["input"]
                    and await query(prometheus, 'sum(rillet_requests_total{outcome="completed"})')
                    == want["completed"]
                    and await query(prometheus, "rillet_client_delay_seconds_count")
                    == want["client_delay_count"]
                )

            await eventually(scraped, "a scrape showing the run's totals")
            assert await query(prometheus, 'rillet_sink_queue_capacity{sink="prometheus"}') == 1024
            in_progress = await query(prometheus, "max_over_time(rillet_streams_in_progress[1m])")
            assert in_progress is not None
            assert in_progress >= 1, "no scrape landed while the streams ran"
    assert want["ttft_count"] == 4
    assert want["client_delay_count"] > 4 * 10
    checked = await anyio.run_process(
        ["promtool", "check", "metrics"], input=generate_latest(sink.registry), check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


@pytest.mark.anyio
async def test_batch_job_pushes_its_totals_and_last_success(pushgateway: Server) -> None:
    """At the end of a batch run the group holds the run's tokens and the time of its success."""
    before = time.time()
    sink = PrometheusSink(
        address=None, pushgateway=pushgateway.address, job="rillet_test", grouping={"report": "r1"}
    )
    async with open_simulator(SIMULATOR) as sim:
        want = expected(await run_streams([sink], sim.base_url, 2))
    samples = await gateway_samples(pushgateway, "rillet_test")
    labels = {"model": MODEL, "report": "r1"}
    output = key("rillet_tokens_total", **labels, token_type="output")
    overestimated = key("rillet_tokens_overestimated_total", **labels, token_type="output")
    assert samples[output] - samples[overestimated] == want["output"]
    assert samples[key("rillet_requests_total", **labels, outcome="completed")] == want["completed"]
    assert samples[key("rillet_time_to_first_delta_seconds_count", **labels)] == want["ttft_count"]
    assert before <= samples[key("rillet_job_last_success_timestamp_seconds", report="r1")] <= time.time()
    assert samples[key("rillet_job_duration_seconds", report="r1")] > 0


@pytest.mark.anyio
async def test_a_failed_run_keeps_the_last_success(pushgateway: Server) -> None:
    """A failure updates the group but not its last-success time, so an alert on its age still fires."""
    first = PrometheusSink(address=None, pushgateway=pushgateway.address, job="flaky")
    async with first:
        pass
    succeeded = (await gateway_samples(pushgateway, "flaky"))["rillet_job_last_success_timestamp_seconds{}"]
    failed = PrometheusSink(address=None, pushgateway=pushgateway.address, job="flaky")
    async with failed:
        await failed.write(
            [
                Item("s", AttemptStarted(1, "initial", ""), 0),
                Item("s", StreamEnded("error", None, "overloaded", "overloaded_error"), 0),
            ]
        )
    samples = await gateway_samples(pushgateway, "flaky")
    assert samples["rillet_job_last_success_timestamp_seconds{}"] == succeeded
    assert samples[key("rillet_request_errors_total", error_type="overloaded_error", model="unknown")] == 1


@pytest.mark.anyio
async def test_periodic_pushes_then_delete_on_success(pushgateway: Server) -> None:
    """The group appears while the job runs (periodic pushes) and is deleted when it succeeds."""
    sink = PrometheusSink(
        address=None, pushgateway=pushgateway.address, job="tidy", push_interval=0.2, delete_on_success=True
    )
    seen_running: list[float] = []

    async def watch() -> bool:
        running = (await gateway_samples(pushgateway, "tidy")).get("rillet_streams_in_progress{}")
        if running:
            seen_running.append(running)
        return bool(running)

    async with open_simulator(SIMULATOR) as sim, anyio.create_task_group() as tg:
        tg.start_soon(eventually, watch, "a periodic push while streams run")
        await run_streams([sink], sim.base_url, 2)
    assert seen_running
    assert await gateway_samples(pushgateway, "tidy") == {}


@pytest.mark.anyio
async def test_two_pipelines_in_one_process_do_not_collide() -> None:
    """Separate registries: each pipeline's /metrics shows its own streams only."""
    sinks = [PrometheusSink(address="127.0.0.1:0"), PrometheusSink(address="127.0.0.1:0")]
    async with open_simulator(SIMULATOR) as sim:
        client = make_client(api_key="test", base_url=sim.base_url)
        async with (
            client,
            Pipeline(client, stages=STAGES, sinks=[SinkSpec(sinks[0])]) as first,
            Pipeline(client, stages=STAGES, sinks=[SinkSpec(sinks[1])]) as second,
        ):
            async with anyio.create_task_group() as tg:
                for pipeline, streams in ((first, 1), (second, 2)):
                    for n in range(streams):
                        tg.start_soon(pipeline.run, request(n))
            for sink, streams in zip(sinks, (1, 2), strict=True):
                assert sink.address is not None
                host, port = sink.address
                text = await get(f"http://{host}:{port}/metrics")
                assert f'rillet_requests_total{{model="{MODEL}",outcome="completed"}} {streams:.1f}' in text
