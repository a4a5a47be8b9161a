"""Every query of config/grafana/rillet.json parses and draws a series from real runs.

A worker runs report jobs against the simulator (one that loops, one whose connection drops and is
resumed, one the API refuses (529) until it goes to the dead-letter stream); a real Prometheus
scrapes the worker; each panel's query is asked over the run as Grafana would (a range query, with
``$__rate_interval`` as Grafana sets it for a 1 s scrape interval: at least 4 scrapes, here 1m).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from scale_harness import RedisServer, SimulatorProcess, Workers, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from tests.integration.conftest import Server, start_prometheus

__all__ = ["start_prometheus"]  # the fixture, imported to be used here

pytestmark = pytest.mark.anyio

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "rillet.json"
SCENARIOS: tuple[dict[str, str], ...] = (
    {},
    {},
    {"x-rillet-scenario": "loop"},
    {"x-rillet-scenario": "drop", "x-rillet-drop-after": "150"},
    {"x-rillet-scenario": "unavailable"},
)


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def query_range(prometheus: Server, promql: str, start: float, end: float) -> dict[str, Any]:
    params = {"query": promql, "start": start, "end": end, "step": 1}
    url = f"{prometheus.url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:  # a query that does not parse is a 400 with the reason
        answer = json.loads(error.read())
    return answer


def all_ended(prometheus: Server, promql: str, begin: float) -> bool:
    """Whether the last scrape shows every job ended (each counted once as a job, once or more as a
    stream: the dead-lettered one ran twice)."""
    result = query_range(prometheus, promql, begin, time.time())["data"]["result"]
    return bool(result) and float(result[0]["values"][-1][1]) >= 2 * len(SCENARIOS) + 1


async def test_every_dashboard_query_returns_a_series(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    tmp_path: Path,
    start_prometheus: Callable[[Sequence[str]], Server],
) -> None:
    queue, events = scale
    simulator = SimulatorProcess("--tokens-per-s", "3000", "--ttft-ms", "30")
    config = write_config(tmp_path / "worker.toml", redis_server.url, max_attempts=2, lease_seconds=6.0)
    with config.open("a") as file:
        file.write('\n[[sinks]]\ntype = "prometheus"\non_error = "disable"\n')
    workers = Workers(config, simulator.base_url)
    try:
        await anyio.to_thread.run_sync(workers.start, "--metrics-port", "0", "--concurrency", "5")
        targets = re.findall(r"metrics on http://(\S+)/metrics", "".join(workers.log))
        prometheus = await anyio.to_thread.run_sync(start_prometheus, targets)
        begin = time.time()
        job_ids = []
        for n, headers in enumerate(SCENARIOS):
            request = report_request(n, max_tokens=1500) | {"extra_headers": headers}
            job_ids.append(await queue.submit(request))
        finished = await wait_finished(events, job_ids, within=180)
        assert sorted(state["status"] for state in finished.values()).count("dead") >= 1
        scraped = "sum(rillet_jobs_finished_total) + sum(rillet_requests_total)"
        with anyio.fail_after(60):  # Prometheus cannot notify: poll until it scraped the end
            while not await anyio.to_thread.run_sync(all_ended, prometheus, scraped, begin):  # noqa: ASYNC110
                await anyio.sleep(0.5)
        await anyio.sleep(2)  # two more scrapes, so that every rate has its samples
        end = time.time()
        empty = []
        for promql in queries():
            answer = await anyio.to_thread.run_sync(
                query_range, prometheus, promql.replace("$__rate_interval", "1m"), begin, end
            )
            assert answer["status"] == "success", f"{promql}: {answer}"
            if not answer["data"]["result"]:
                empty.append(promql)
        assert empty == []
    finally:
        workers.close()
        simulator.close()
