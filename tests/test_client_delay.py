"""The client's own delay (issue 19): each item's arrival at the socket → its hand-over to the sinks.

Streams come from the simulator over loopback through the real SDK and the real runner; the
Prometheus sink's registry is read as a scrape would read it (a real Prometheus scrapes it in
``tests/integration/test_prometheus_server.py``).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.client_delay import DELAY_BUCKETS, ClientDelay
from pipeline.events import Item
from pipeline.runner import Pipeline, StreamResult
from pipeline.sink import SinkSpec
from pipeline.stages import StreamContext
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.latency import LatencyStage
from sinks.prometheus import PrometheusSink
from tests.conftest import SimulatorProcess, clean_environment
from tests.test_pipeline import RecordingSink

MODEL = "claude-sonnet-4-6"
SIMULATOR = SimulatorSettings(scenario="report", ttft_ms=5, tokens_per_s=0, report_tokens=400)
STALL = 0.03
"""Seconds the slow stage blocks the event loop on each text delta."""


def request(max_tokens: int = 300) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "A report."}]}


class SlowStage:
    """Blocks the loop on each text delta, as a client too busy to keep up does."""

    def __init__(self, ctx: StreamContext) -> None:
        self.slowed = 0

    def process(self, item: Item) -> Sequence[Item]:
        if item.event.type == "content_block_delta":
            time.sleep(STALL)
            self.slowed += 1
        return (item,)

    def finish(self) -> Sequence[Item]:
        return ()


async def run(stages: Sequence[Any], *sinks: Any, max_tokens: int = 300) -> StreamResult:
    async with open_simulator(SIMULATOR) as sim:
        client = make_client(api_key="test", base_url=sim.base_url)
        specs = [SinkSpec(sink) for sink in sinks]
        async with client, Pipeline(client, stages=stages, sinks=specs) as pipeline:
            return await pipeline.run(request(max_tokens))


def above(delay: ClientDelay, seconds: float) -> int:
    """Events whose delay is above ``seconds``, a bucket bound."""
    return sum(delay.counts[DELAY_BUCKETS.index(seconds) + 1 :])


@pytest.mark.anyio
async def test_every_item_of_a_real_stream_is_counted() -> None:
    recorder = RecordingSink()
    result = await run([AccumulateStage, LatencyStage], recorder)
    assert result.outcome == "completed"
    items = recorder.items
    assert len(items) == result.items > 10
    assert all(item.delivered_ns >= item.received_ns > 0 for item in items)
    delays = [item.delivered_ns - item.received_ns for item in items]
    assert result.client_delay.count == len(items)
    assert result.client_delay.max_ns == max(delays)
    assert result.client_delay.sum_ns == sum(delays)


@pytest.mark.anyio
async def test_a_slow_stage_shows_as_delay_in_the_result_and_the_metrics() -> None:
    """Every slowed delta reaches the sinks at least ``STALL`` after its bytes arrived; the wire-time
    latency figures are computed as before, from the receive stamps alone."""
    slow: list[SlowStage] = []

    def slow_stage(ctx: StreamContext) -> SlowStage:
        slow.append(SlowStage(ctx))
        return slow[-1]

    metrics = PrometheusSink(address=None)
    result = await run([LatencyStage, slow_stage], metrics, max_tokens=60)
    assert result.outcome == "completed"
    slowed = slow[0].slowed
    assert slowed >= 5
    delay = result.client_delay
    assert above(delay, 0.025) >= slowed
    assert delay.maximum >= STALL
    registry = metrics.registry
    assert registry.get_sample_value("rillet_client_delay_seconds_count") == delay.count
    within = registry.get_sample_value("rillet_client_delay_seconds_bucket", {"le": "0.025"})
    assert within == delay.count - above(delay, 0.025)
    sum_seconds = registry.get_sample_value("rillet_client_delay_seconds_sum")
    assert sum_seconds == pytest.approx(delay.sum_ns / 1e9)
    assert result.latency is not None
    assert result.latency.to_first_delta is not None


def rillet_run(cwd: Path, base_url: str, *flags: str) -> str:
    """A real ``rillet run`` of a short report; its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.apps", "run", "--max-tokens", "200", *flags],
        cwd=cwd,
        env=clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test-key"),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_run_verbose_prints_the_client_delay(tmp_path: Path, simulator_process: SimulatorProcess) -> None:
    base_url = simulator_process()
    stderr = rillet_run(tmp_path, base_url, "--verbose")
    line = next(line for line in stderr.splitlines() if "client delay" in line)
    assert line.startswith("rillet: client delay, socket to sinks: p50 ")
    items = int(line.rsplit(" over ", 1)[1].split()[0].replace(",", ""))
    assert items > 10
    assert "client delay" not in rillet_run(tmp_path, base_url)


delays_ns = st.lists(st.integers(0, 200 * 10**9), min_size=1, max_size=200)


def histogram(values: list[int]) -> ClientDelay:
    """The histogram of delays ``values`` (ns), each delivered by a clock that reads 0."""
    delay = ClientDelay()
    with mock.patch("pipeline.client_delay._clock", return_value=0):
        for value in values:
            delay.deliver(Item("s", None, -value))
    return delay


@given(delays_ns, st.floats(0, 1))
def test_a_quantile_lies_in_the_bucket_of_the_exact_one(values: list[int], q: float) -> None:
    """Read from buckets, a quantile is off by at most its bucket's width, and never above the max."""
    delay = histogram(values)
    ordered = sorted(values)
    exact = ordered[max(math.ceil(q * len(ordered)), 1) - 1] / 1e9
    bounds = (*DELAY_BUCKETS, max(values) / 1e9)
    lower = max((b for b in bounds if b < exact), default=0.0)
    upper = min(b for b in bounds if b >= exact)
    assert lower <= delay.quantile(q) <= upper
    assert delay.quantile(q) <= delay.maximum == max(values) / 1e9
    assert delay.mean == pytest.approx(sum(values) / len(values) / 1e9)


@given(st.lists(delays_ns, max_size=4))
def test_histograms_merge_and_survive_json(streams: list[list[int]]) -> None:
    """Several streams' histograms (several processes' records) add up to the histogram of all."""
    parts = [ClientDelay.from_json(histogram(values).to_json()) for values in streams]
    merged = ClientDelay.merged(parts)
    whole = histogram([value for values in streams for value in values])
    assert merged.to_json() == whole.to_json()
    assert merged.count == sum(len(values) for values in streams)
