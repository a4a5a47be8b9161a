"""The Prometheus sink: what it counts, when it binds labels, what it serves, and how it fails."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
import shutil
import socket
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from pipeline.apps.run.sse_file import read_sse_events
from pipeline.apps.shared.build import build_sinks
from pipeline.config import load_config
from pipeline.errors import ConfigError, SinkError
from pipeline.events import (
    AttemptStarted,
    CostUpdate,
    FirstToken,
    Item,
    LatencySummary,
    RepetitionDetected,
    StreamEnded,
    Usage,
)
from pipeline.fanout import FanOut, SinkStatistics
from pipeline.sink import Buffer, OnFull, SinkSpec
from sinks._metrics import DURATION_BUCKETS, GAP_BUCKETS, TTFT_BUCKETS, observe_many
from sinks.prometheus import PrometheusSink, parse_address
from tests.conftest import free_port
from tests.sinks.conformance import CHECKS, Check

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / ".." / "shared" / "fixtures" / "sse"
MODEL = "claude-fable-5"
"""The model the fixture ``sdk-stream-a-refusal.sse`` reports in its ``message_start``."""
USAGE = Usage(input_tokens=28, output_tokens=106, cache_read_input_tokens=3, cache_creation_input_tokens=5)


def item(stream_id: str, event: Any, attempt: int = 1) -> Item:
    return Item(stream_id, event, 0, attempt)


def recorded_stream(stream_id: str, name: str = "sdk-stream-a-refusal.sse") -> list[Item]:
    """A recorded stream with the rillet events the stages would add around it."""
    sdk = [item(stream_id, recorded.event) for recorded in read_sse_events(FIXTURES / name)]
    latency = LatencySummary(0.01, 0.02, 0.05, 0.08, None, 1.5, 0.012, (0.01, 0.02, 0.03), 106)
    return [
        item(stream_id, AttemptStarted(1, "initial", "")),
        sdk[0],
        item(stream_id, FirstToken("message_start", 0.02)),
        *sdk[1:3],
        item(stream_id, FirstToken("delta", 0.05)),
        item(stream_id, CostUpdate(0.001, True, MODEL, Usage(input_tokens=28), 1)),
        *sdk[3:],
        item(stream_id, CostUpdate(0.0123, False, MODEL, USAGE, 1)),
        item(stream_id, latency),
        item(stream_id, StreamEnded("completed", "refusal")),
    ]


def value(sink: PrometheusSink, name: str, /, **labels: str) -> float:
    sample = sink.registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


async def scrape(url: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    return await anyio.to_thread.run_sync(get)


async def write_all(sink: PrometheusSink, batches: Sequence[Sequence[Item]]) -> None:
    for batch in batches:
        await sink.write(batch)


@pytest.mark.anyio
async def test_recorded_stream_is_counted_with_its_model() -> None:
    """A whole stream: model from message_start, timings, tokens and cost once, outcome, events."""
    stream = recorded_stream("s1")
    async with PrometheusSink(address=None) as sink:
        await sink.write(stream)
    assert value(sink, "rillet_time_to_first_delta_seconds_count", model=MODEL) == 1
    assert value(sink, "rillet_time_to_first_delta_seconds_sum", model=MODEL) == 0.05
    assert value(sink, "rillet_time_to_message_start_seconds_count", model=MODEL) == 1
    assert value(sink, "rillet_delta_gap_seconds_count", model=MODEL) == 3
    assert value(sink, "rillet_time_per_output_token_seconds_sum", model=MODEL) == 0.012
    assert value(sink, "rillet_request_duration_seconds_sum", model=MODEL, outcome="completed") == 1.5
    assert value(sink, "rillet_tokens_total", model=MODEL, token_type="output") == 106
    assert value(sink, "rillet_tokens_total", model=MODEL, token_type="input") == 28
    assert value(sink, "rillet_tokens_total", model=MODEL, token_type="cache_read") == 3
    assert value(sink, "rillet_tokens_total", model=MODEL, token_type="cache_creation") == 5
    assert value(sink, "rillet_cost_usd_total", model=MODEL) == pytest.approx(0.0123)
    assert value(sink, "rillet_requests_total", model=MODEL, outcome="completed") == 1
    assert value(sink, "rillet_events_total", type="content_block_delta") == sum(
        1 for i in stream if i.event.type == "content_block_delta"
    )
    assert value(sink, "rillet_events_total", type="rillet.cost") == 2
    assert value(sink, "rillet_streams_in_progress") == 0


@pytest.mark.anyio
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
async def test_conformance(check: Check) -> None:
    """The sink contract, with ``/metrics`` served on a free loopback port."""
    await check(lambda: PrometheusSink(address="127.0.0.1:0"))


@pytest.mark.anyio
async def test_unpriced_cost_counts_tokens_but_not_usd() -> None:
    """A model genai-prices cannot price costs ``nan``: tokens still count, the USD counter stays finite."""
    stream = [
        item("s1", dataclasses.replace(i.event, usd=float("nan"))) if isinstance(i.event, CostUpdate) else i
        for i in recorded_stream("s1")
    ]
    async with PrometheusSink(address=None) as sink:
        await sink.write(stream)
    assert value(sink, "rillet_tokens_total", model=MODEL, token_type="output") == 106
    assert value(sink, "rillet_cost_usd_total", model=MODEL) == 0
    assert value(sink, "rillet_cost_usd_overestimated_total", model=MODEL) == 0


@pytest.mark.anyio
async def test_events_before_message_start_wait_for_the_model() -> None:
    """A timing that arrives before message_start is labelled with the model once it is known."""
    stream = recorded_stream("s1")
    first_token = stream.pop(2)
    stream.insert(0, first_token)
    async with PrometheusSink(address=None) as sink:
        await sink.write(stream[:1])
        assert value(sink, "rillet_time_to_message_start_seconds_count", model=MODEL) == 0
        await sink.write(stream[1:])
    assert value(sink, "rillet_time_to_message_start_seconds_count", model=MODEL) == 1


@pytest.mark.anyio
async def test_stream_that_failed_before_message_start() -> None:
    """No message_start: the model comes from the cost update, or is "unknown"; the error is typed."""
    failed = [
        item("a", AttemptStarted(1, "initial", "")),
        item("a", AttemptStarted(2, "retry", "overloaded")),
        item("a", StreamEnded("error", None, "overloaded", "overloaded_error")),
    ]
    async with PrometheusSink(address=None) as sink:
        await sink.write(failed)
    assert value(sink, "rillet_requests_total", model="unknown", outcome="error") == 1
    assert value(sink, "rillet_request_errors_total", model="unknown", error_type="overloaded_error") == 1
    assert value(sink, "rillet_reconnects_total", model="unknown") == 1
    assert value(sink, "rillet_tokens_total", model="unknown", token_type="output") == 0


@pytest.mark.anyio
async def test_reconnects_and_repetitions_are_counted_per_model() -> None:
    """A second attempt is a reconnect; a repetition detection counts once."""
    stream = recorded_stream("s1")
    stream[-1:-1] = [
        item("s1", AttemptStarted(2, "continue", "dropped"), attempt=2),
        item("s1", RepetitionDetected(40, 5, 200, "abort", "la la")),
    ]
    stream[-1] = item("s1", StreamEnded("aborted_repetition", None))
    async with PrometheusSink(address=None) as sink:
        await sink.write(stream)
    assert value(sink, "rillet_reconnects_total", model=MODEL) == 1
    assert value(sink, "rillet_repetition_detections_total", model=MODEL) == 1
    assert value(sink, "rillet_requests_total", model=MODEL, outcome="aborted_repetition") == 1


@given(
    streams=st.integers(min_value=1, max_value=5),
    seed=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=20),
)
@settings(max_examples=40, deadline=None)
def test_interleaved_streams_in_any_batches_count_tokens_once(
    streams: int, seed: Any, cuts: list[int]
) -> None:
    """However streams interleave and batches split, each stream's tokens count exactly once."""
    queues = [recorded_stream(f"s{n}") for n in range(streams)]
    merged: list[Item] = []
    while any(queues):
        merged.append(seed.choice([q for q in queues if q]).pop(0))
    bounds = sorted({0, len(merged), *(c for c in cuts if c < len(merged))})
    batches = [merged[a:b] for a, b in itertools.pairwise(bounds)]
    sink = PrometheusSink(address=None)

    async def run() -> None:
        async with sink:
            await write_all(sink, batches)

    anyio.run(run)
    assert value(sink, "rillet_tokens_total", model=MODEL, token_type="output") == 106 * streams
    assert value(sink, "rillet_requests_total", model=MODEL, outcome="completed") == streams
    assert value(sink, "rillet_time_to_first_delta_seconds_count", model=MODEL) == streams
    assert value(sink, "rillet_streams_in_progress") == 0


@given(st.lists(st.floats(min_value=0, max_value=100) | st.sampled_from(GAP_BUCKETS), max_size=50))
def test_observe_many_equals_observe_one_at_a_time(values: list[float]) -> None:
    """The bulk observe (it uses prometheus-client internals) exposes what ``observe`` would."""
    one, many = CollectorRegistry(), CollectorRegistry()
    single = Histogram("h_seconds", "h", ["m"], buckets=GAP_BUCKETS, registry=one).labels("x")
    for v in values:
        single.observe(v)
    observe_many(Histogram("h_seconds", "h", ["m"], buckets=GAP_BUCKETS, registry=many).labels("x"), values)
    assert exposed(many) == pytest.approx(exposed(one))


def exposed(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample but the creation times, by name and labels."""
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_registries_are_private_and_do_not_collide() -> None:
    """Two sinks never touch the global registry, and each one's counts stay its own."""
    first, second = PrometheusSink(address=None), PrometheusSink(address=None)
    assert first.registry is not second.registry
    assert REGISTRY.get_sample_value("rillet_streams_in_progress") is None

    async def run() -> None:
        async with first, second:
            await first.write(recorded_stream("x"))

    anyio.run(run)
    assert value(first, "rillet_requests_total", model=MODEL, outcome="completed") == 1
    assert value(second, "rillet_requests_total", model=MODEL, outcome="completed") == 0


def test_a_registry_holds_one_sink() -> None:
    """Passing the same registry twice is refused by prometheus-client, not silently merged."""
    registry = CollectorRegistry()
    PrometheusSink(address=None, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusSink(address=None, registry=registry)


def test_lane_statistics_are_read_at_scrape_time() -> None:
    """Queue depth, drops and errors per sink come from the fan-out's provider, as it is now."""
    now = [SinkStatistics("file", 3, 16, 10, 2, 1, True, "OSError: disk full")]
    sink = PrometheusSink(address=None)
    sink.observe_fanout(lambda: tuple(now))
    assert value(sink, "rillet_sink_queue_depth", sink="file") == 3
    assert value(sink, "rillet_sink_queue_capacity", sink="file") == 16
    assert value(sink, "rillet_sink_dropped_items_total", sink="file") == 2
    assert value(sink, "rillet_sink_errors_total", sink="file") == 1
    assert value(sink, "rillet_sink_disabled", sink="file") == 1
    now[0] = SinkStatistics("file", 0, 16, 13, 7, 1, True, None)
    assert value(sink, "rillet_sink_dropped_items_total", sink="file") == 7
    assert value(sink, "rillet_sink_written_items_total", sink="file") == 13


class _Stuck:
    """A sink that never finishes its first write until released: its lane fills up."""

    name = "stuck"

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __aenter__(self) -> _Stuck:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def write(self, batch: Sequence[Item]) -> None:
        await self.release.wait()


@pytest.mark.anyio
async def test_a_real_fanout_reports_drops_and_depth() -> None:
    """With a real fan-out, a full drop_newest lane shows its depth and drops in the exposition."""
    metrics, stuck = PrometheusSink(address=None), _Stuck()
    specs = [SinkSpec(metrics), SinkSpec(stuck, Buffer(2, OnFull.DROP_NEWEST))]
    async with FanOut(specs) as fanout:
        await fanout.send(item("s", AttemptStarted(1, "initial", "")))
        await anyio.wait_all_tasks_blocked()
        for _ in range(5):
            await fanout.send(item("s", AttemptStarted(1, "initial", "")))
        assert value(metrics, "rillet_sink_queue_depth", sink="stuck") == 2
        assert value(metrics, "rillet_sink_dropped_items_total", sink="stuck") == 3
        assert value(metrics, "rillet_sink_queue_capacity", sink="prometheus") == 1024
        stuck.release.set()


@pytest.mark.anyio
async def test_serves_metrics_while_open_and_stops_on_exit() -> None:
    """``/metrics`` answers on loopback during the sink's life and is gone after it."""
    async with PrometheusSink(address="127.0.0.1:0") as sink:
        assert sink.address is not None
        host, port = sink.address
        assert host == "127.0.0.1"
        await sink.write(recorded_stream("s1"))
        text = await scrape(f"http://{host}:{port}/metrics")
        assert f'rillet_requests_total{{model="{MODEL}",outcome="completed"}} 1.0' in text
    assert sink.address is None
    with pytest.raises(urllib.error.URLError):
        await scrape(f"http://{host}:{port}/metrics")


@pytest.mark.anyio
async def test_a_taken_port_is_a_configuration_error() -> None:
    """A port already in use refuses the run before any request (exit 2), the OS error as its cause."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}") as caught:
            async with PrometheusSink(address=f"127.0.0.1:{port}"):
                pass
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.anyio
async def test_a_dead_pushgateway_raises_a_chained_sink_error() -> None:
    """A push that cannot reach the gateway fails the sink on exit, so on_error applies."""
    with pytest.raises(SinkError, match="Pushgateway") as caught:
        async with PrometheusSink(address=None, pushgateway=f"127.0.0.1:{free_port()}", job="j"):
            pass
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.anyio
async def test_write_after_close_raises_and_close_is_idempotent() -> None:
    """The sink contract: closing twice is harmless, writing after close is refused."""
    sink = PrometheusSink(address="127.0.0.1:0")
    async with sink:
        pass
    await sink.__aexit__(None, None, None)
    with pytest.raises(anyio.ClosedResourceError):
        await sink.write([])


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("localhost:80", ("localhost", 80))],
    ids=["ipv4", "ipv6", "name"],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    """host:port, with brackets around an IPv6 host."""
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9464", "127.0.0.1:", "127.0.0.1:http", "h:70000"])
def test_bad_address_is_a_config_error(address: str) -> None:
    """The message names the value and an example of the right form."""
    with pytest.raises(ConfigError, match="host:port"):
        PrometheusSink(address=address)


def test_push_interval_needs_a_pushgateway() -> None:
    """A push interval without a gateway is a configuration mistake, caught at construction."""
    with pytest.raises(ConfigError, match="push_interval"):
        PrometheusSink(address=None, push_interval=5)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
@pytest.mark.anyio
async def test_exposition_passes_promtool() -> None:
    """Every family, with samples, passes ``promtool check metrics``."""
    sink = PrometheusSink(address=None)
    sink.observe_fanout(lambda: (SinkStatistics("file", 0, 16, 1, 0, 0, False, None),))
    async with sink:
        await sink.write(recorded_stream("s1"))
    checked = await anyio.run_process(
        ["promtool", "check", "metrics"], input=generate_latest(sink.registry), check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_shipped_config_keys_are_the_sink_arguments() -> None:
    """config/metrics.toml's prometheus sink, policies aside, builds a sink as written."""
    config = tomllib.loads((REPO / "config" / "metrics.toml").read_text())
    [table] = [sink for sink in config["sinks"] if sink["type"] == "prometheus"]
    arguments = {k: v for k, v in table.items() if k not in {"type", "buffer", "on_full", "on_error"}}
    assert PrometheusSink(**arguments).name == "prometheus"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
@pytest.mark.anyio
async def test_shipped_scrape_config_passes_promtool() -> None:
    """config/prometheus.yml is a valid Prometheus configuration."""
    checked = await anyio.run_process(
        ["promtool", "check", "config", str(REPO / "config" / "prometheus.yml")], check=False
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


@pytest.mark.anyio
@pytest.mark.parametrize(("estimate", "over"), [(150, 44), (50, 0)], ids=["over", "under"])
async def test_tokens_and_cost_rise_live_and_the_overshoot_is_counted_apart(estimate: int, over: int) -> None:
    """Estimates count at once; at the end, what they counted beyond the final usage goes apart."""
    stream = recorded_stream("s1")
    live = CostUpdate(0.0123 * estimate / 106, True, MODEL, Usage(28, estimate, 3, 5), 1)
    stream.insert(-3, item("s1", live))
    async with PrometheusSink(address=None) as sink:
        await sink.write(stream[:-3])
        assert value(sink, "rillet_tokens_total", model=MODEL, token_type="output") == estimate
        assert value(sink, "rillet_cost_usd_total", model=MODEL) == pytest.approx(live.usd)
        await sink.write(stream[-3:])
    counted = value(sink, "rillet_tokens_total", model=MODEL, token_type="output")
    overestimated = value(sink, "rillet_tokens_overestimated_total", model=MODEL, token_type="output")
    assert (counted, overestimated) == (max(estimate, 106), over)
    usd = value(sink, "rillet_cost_usd_total", model=MODEL)
    assert usd - value(sink, "rillet_cost_usd_overestimated_total", model=MODEL) == pytest.approx(0.0123)
    assert value(sink, "rillet_tokens_overestimated_total", model=MODEL, token_type="input") == 0


@pytest.mark.anyio
async def test_exit_lingers_until_one_more_scrape() -> None:
    """A serving sink without a pushgateway ends only once a scrape read its end (or ``linger`` passed)."""
    sink = PrometheusSink(address="127.0.0.1:0", linger=60)
    await sink.__aenter__()
    assert sink.address is not None
    url = f"http://{sink.address[0]}:{sink.address[1]}/metrics"
    await sink.write(recorded_stream("s1"))
    closed = anyio.Event()

    async def close() -> None:
        await sink.__aexit__(None, None, None)
        closed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        await anyio.sleep(0.3)
        assert not closed.is_set()
        text = await scrape(url)
        with anyio.fail_after(10):
            await closed.wait()
    assert f'rillet_requests_total{{model="{MODEL}",outcome="completed"}} 1.0' in text


def test_linger_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="linger"):
        PrometheusSink(address=None, linger=-1)


def prometheus_quantile(q: float, bounds: Sequence[float], value: float) -> float:
    """``histogram_quantile`` of one observation, as Prometheus interpolates inside its bucket."""
    upper = bisect.bisect_left(bounds, value)
    lower = bounds[upper - 1] if upper else 0.0
    return lower + q * (bounds[upper] - lower)


@given(st.floats(min_value=0.1, max_value=5.0))
def test_ttft_quantiles_are_read_within_ten_percent_where_claude_answers(seconds: float) -> None:
    """From 0.1 s to 5 s a TTFT's p95 read from the buckets is within 10 % of it (0.802 s read 0.975 s)."""
    assert prometheus_quantile(0.95, TTFT_BUCKETS, seconds) <= seconds * 1.1
    assert prometheus_quantile(0.95, TTFT_BUCKETS, 0.802) == pytest.approx(0.8475)


def test_duration_buckets_reach_an_hour() -> None:
    assert DURATION_BUCKETS[-1] >= 3600


@pytest.mark.anyio
async def test_buckets_are_set_by_config(tmp_path: Path) -> None:
    """A config's bucket lists reach the histograms; bounds out of order are refused naming the key."""
    config = tmp_path / "run.toml"
    config.write_text('[[sinks]]\ntype = "prometheus"\naddress = ""\nttft_buckets = [0.5, 1.0]\n')
    [spec] = build_sinks(load_config(config), verbose=False, status_line=False)
    sink = spec.sink
    assert isinstance(sink, PrometheusSink)
    async with sink:
        await sink.write(recorded_stream("s1"))
    assert value(sink, "rillet_time_to_first_delta_seconds_bucket", model=MODEL, le="0.5") == 1
    assert value(
        sink, "rillet_request_duration_seconds_bucket", model=MODEL, outcome="completed", le="3600.0"
    )
    config.write_text('[[sinks]]\ntype = "prometheus"\nduration_buckets = [2.0, 1.0]\n')
    with pytest.raises(ConfigError, match=r"run.toml: sinks\[0\].duration_buckets: .*increasing order"):
        load_config(config)


def test_docs_metrics_lists_every_family_the_sink_serves() -> None:
    """docs/metrics.md's table names every family, as exposed (counters with ``_total``), and no other."""
    docs = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(rillet_\w+)` \|", docs, re.MULTILINE))
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in PrometheusSink(address=None).registry.collect()
    }
    pushed_only = {"rillet_job_last_success_timestamp_seconds", "rillet_job_duration_seconds"}
    assert served - documented == set()
    assert documented - served == pushed_only
