"""Two workers on one machine, one metrics port each, scraped by a real Prometheus.

Each worker's ``/metrics`` carries the pipeline's metrics (TTFT, tokens, cost, outcomes, per-sink
lanes) from the config's prometheus sink beside its own job gauges, and Prometheus adds the two up
to what the jobs' own records say.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from scale_harness import RedisServer, SimulatorProcess, Workers, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from tests.integration.conftest import Server, start_prometheus

__all__ = ["start_prometheus"]  # the fixture, imported to be used here

pytestmark = pytest.mark.anyio

JOBS = 4
REPORT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "report.toml"
BILLED_OUTPUT = (
    'sum(rillet_tokens_total{token_type="output"})'
    ' - sum(rillet_tokens_overestimated_total{token_type="output"})'
)


def query(prometheus: Server, promql: str) -> float | None:
    url = f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def test_two_workers_export_pipeline_metrics_on_a_port_each(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    tmp_path: Path,
    start_prometheus: Callable[[Sequence[str]], Server],
) -> None:
    queue, events = scale
    simulator = SimulatorProcess("--tokens-per-s", "4000", "--ttft-ms", "30")
    config = write_config(tmp_path / "worker.toml", redis_server.url)
    with config.open("a") as file:
        file.write('\n[[sinks]]\ntype = "prometheus"\non_error = "disable"\n')
    workers = Workers(config, simulator.base_url)
    try:
        for _ in range(2):
            await anyio.to_thread.run_sync(workers.start, "--metrics-port", "0", "--concurrency", "2")
        targets = re.findall(r"metrics on http://(\S+)/metrics", "".join(workers.log))
        assert len(set(targets)) == 2, workers.log
        prometheus = await anyio.to_thread.run_sync(start_prometheus, targets)
        job_ids = [await queue.submit(report_request(n, max_tokens=1500)) for n in range(JOBS)]
        finished = await wait_finished(events, job_ids, within=120)
        billed = sum(int(state["output_tokens"]) for state in finished.values())
        want = {
            BILLED_OUTPUT: billed,
            'sum(rillet_requests_total{outcome="completed"})': JOBS,
            "sum(rillet_time_to_first_delta_seconds_count)": JOBS,
            'sum(rillet_jobs_finished_total{outcome="done"})': JOBS,
            "count(rillet_jobs_running)": 2,  # each worker's own gauge, beside the pipeline's families
            'sum(rillet_sink_dropped_items_total{sink="prometheus"})': 0,
        }
        seen: dict[str, float | None] = {}
        with anyio.move_on_after(30):
            while seen != want:
                await anyio.sleep(0.5)
                seen = {promql: await anyio.to_thread.run_sync(query, prometheus, promql) for promql in want}
        assert seen == want
        assert await anyio.to_thread.run_sync(query, prometheus, 'count(up{job="rillet"} == 1)') == 2
        assert (await anyio.to_thread.run_sync(query, prometheus, "sum(rillet_cost_usd_total)") or 0) > 0
        written = 'sum(rillet_sink_written_items_total{sink="redis-log"})'
        assert (await anyio.to_thread.run_sync(query, prometheus, written) or 0) > 0
    finally:
        workers.close()
        simulator.close()


@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_a_report_config_is_refused_by_the_long_running_commands(command: str, tmp_path: Path) -> None:
    """config/report.toml writes one report file and the terminal: many streams cannot share them."""
    report = REPORT_CONFIG
    rillet = str(Path(sys.executable).parent / "rillet")
    where = ["--redis", "redis://127.0.0.1:1"] if command == "worker" else ["--port", "0"]
    done = await anyio.run_process([rillet, command, str(report), *where], check=False, cwd=tmp_path)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1, lines
    assert f"report.toml: sinks[0] (stdout): rillet {command} runs many streams at once" in lines[0]
