"""OpenTelemetry: a stream's trace and GenAI metrics, from the simulator over HTTP through the real SDK.

In memory (the SDK's span exporter and metric reader), and exported over OTLP/HTTP to a server on
loopback whose requests are decoded with ``opentelemetry-proto``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from pipeline.apps.run.report import run_report
from pipeline.apps.shared.build import build_otel_sink, build_stages
from pipeline.apps.simulator import Simulator, SimulatorSettings, open_simulator
from pipeline.client import make_client
from pipeline.config import OtelConfig, parse_config
from pipeline.errors import ConfigError
from pipeline.events import Item
from pipeline.runner import Pipeline, StreamResult
from pipeline.sink import Buffer, OnFull, SinkSpec
from pipeline.source.resume import ResumeSettings
from sinks.otel import OtelSink
from tests.otlp_collector import Collector, collector

__all__ = ["collector"]  # the fixture, imported to be used here

pytestmark = pytest.mark.anyio

MODEL = "claude-haiku-4-5"
SDK_SPAN = "anthropic.messages.create"
GENAI_METRICS = {
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.duration",
    "gen_ai.server.time_to_first_token",
    "gen_ai.server.time_per_output_token",
}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with open_simulator(SimulatorSettings(report_tokens=300)) as simulator:
        yield simulator


class Telemetry:
    """In-memory providers: every ended span, and the metrics as a reader collects them."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def metrics(self) -> dict[str, list[Any]]:
        """Data points by metric name."""
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: list(metric.data.data_points)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


async def _run(
    sim: Simulator,
    telemetry: Telemetry,
    headers: dict[str, str],
    max_attempts: int = 4,
    others: Sequence[SinkSpec] = (),
) -> StreamResult:
    sink = OtelSink(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    request = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Write a short report on rivers."}],
        "extra_headers": headers,
    }
    client = make_client(api_key="sim", base_url=sim.base_url, tracer_provider=telemetry.tracer_provider)
    stages = build_stages(parse_config({}, Path("test.toml")))
    resume = ResumeSettings(wait=False, max_attempts=max_attempts)
    async with (
        client,
        Pipeline(client, stages=stages, sinks=[SinkSpec(sink), *others], resume=resume) as pipe,
    ):
        return await pipe.run(request)


def _all_input(result: StreamResult) -> int:
    """The GenAI conventions' input tokens: cached ones too."""
    assert result.cost is not None
    usage = result.cost.usage
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_a_resumed_stream_is_one_trace_with_the_sdk_attempts_under_the_stream_span(
    sim: Simulator,
) -> None:
    telemetry = Telemetry()
    result = await _run(sim, telemetry, {"x-rillet-drop-after": "40", "x-rillet-fail-first": "1"})
    assert result.outcome == "completed"
    assert result.attempts == 2
    spans = telemetry.spans.get_finished_spans()
    (stream,) = _by_name(spans, f"chat {MODEL}")
    attempts = _by_name(spans, SDK_SPAN)
    assert len(attempts) == 2
    assert stream.parent is None
    assert stream.context is not None
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == stream.context.span_id
        assert attempt.context is not None
        assert attempt.context.trace_id == stream.context.trace_id
    attributes = dict(stream.attributes or {})
    assert result.cost is not None
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == MODEL
    assert str(attributes["gen_ai.response.id"]).startswith("msg_")
    assert attributes["rillet.outcome"] == "completed"
    assert attributes["gen_ai.usage.output_tokens"] == result.cost.usage.output_tokens > 0
    assert attributes["gen_ai.usage.input_tokens"] == _all_input(result) > 0
    assert attributes["rillet.cost_usd"] == pytest.approx(result.cost.usd)
    events = {event.name: dict(event.attributes or {}) for event in stream.events}
    assert events["rillet.resume"]["rillet.attempt"] == 2
    assert events["rillet.resume"]["rillet.resume.strategy"] in ("prefill", "continue")
    assert events["rillet.resume"]["rillet.resume.reason"]
    assert "rillet.first_token" in events
    # The stream's span covers its attempts, and its events fall inside it.
    assert stream.start_time is not None
    assert stream.end_time is not None
    for attempt in attempts:
        assert attempt.start_time is not None
        assert attempt.start_time >= stream.start_time
    assert all(stream.start_time <= event.timestamp <= stream.end_time for event in stream.events)


async def test_an_attempt_ended_by_an_error_event_has_an_sdk_span_with_error_status(sim: Simulator) -> None:
    """The source reads the body itself, and shows the SDK's span what the SDK's iterator would: the
    failed attempt's span is an error, the resumed one's has the message's fields and is OK."""
    telemetry = Telemetry()
    result = await _run(sim, telemetry, {"x-rillet-scenario": "overloaded", "x-rillet-fail-first": "1"})
    assert result.outcome == "completed"
    failed, resumed = sorted(_by_name(telemetry.spans.get_finished_spans(), SDK_SPAN), key=_started)
    assert failed.status.status_code is StatusCode.ERROR
    assert resumed.status.status_code is StatusCode.OK
    attributes = dict(resumed.attributes or {})
    assert attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert attributes["anthropic.message.stop_reason"] == result.stop_reason
    assert attributes["gen_ai.usage.output_tokens"] > 0


def _started(span: ReadableSpan) -> int:
    return span.start_time or 0


async def test_the_genai_metrics_carry_their_standard_attributes(sim: Simulator) -> None:
    telemetry = Telemetry()
    result = await _run(sim, telemetry, {})
    assert result.outcome == "completed"
    assert result.cost is not None
    assert result.latency is not None
    metrics = telemetry.metrics()
    assert set(metrics) == GENAI_METRICS
    tokens = {point.attributes["gen_ai.token.type"]: point for point in metrics["gen_ai.client.token.usage"]}
    assert tokens["input"].sum == _all_input(result) > 0
    assert tokens["output"].sum == result.cost.usage.output_tokens
    for name in GENAI_METRICS:
        for point in metrics[name]:
            assert point.attributes["gen_ai.operation.name"] == "chat"
            assert point.attributes["gen_ai.provider.name"] == "anthropic"
            assert point.attributes["gen_ai.request.model"] == MODEL
            assert point.attributes["gen_ai.response.model"] == MODEL
            assert "error.type" not in point.attributes
    (ttft,) = metrics["gen_ai.server.time_to_first_token"]
    assert ttft.sum == pytest.approx(result.latency.to_first_delta)
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.sum >= result.latency.to_first_delta


async def test_a_failed_stream_records_its_error_type(sim: Simulator) -> None:
    telemetry = Telemetry()
    result = await _run(sim, telemetry, {"x-rillet-scenario": "unavailable"}, max_attempts=2)
    assert result.outcome == "error"
    assert result.error_type is not None
    (stream,) = _by_name(telemetry.spans.get_finished_spans(), f"chat {MODEL}")
    assert dict(stream.attributes or {})["error.type"] == result.error_type
    assert not stream.status.is_ok
    metrics = telemetry.metrics()
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == result.error_type
    assert "gen_ai.server.time_to_first_token" not in metrics


def _events(telemetry: Telemetry) -> dict[str, dict[str, Any]]:
    (stream,) = _by_name(telemetry.spans.get_finished_spans(), f"chat {MODEL}")
    return {event.name: dict(event.attributes or {}) for event in stream.events}


async def test_a_repetition_is_an_event_of_the_stream_span(sim: Simulator) -> None:
    telemetry = Telemetry()
    result = await _run(sim, telemetry, {"x-rillet-scenario": "loop"})
    assert result.outcome == "completed"  # the repetition stage's default only warns
    event = _events(telemetry)["rillet.repetition"]
    assert event["rillet.repetition.action"] == "warn"
    assert int(event["rillet.repetition.period"]) > 0


class _Slow:
    """A sink that takes its time over each batch, so that its one-item buffer drops."""

    name = "slow"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def write(self, batch: Sequence[Item]) -> None:
        await anyio.sleep(0.05)


async def test_a_sinks_drops_during_the_stream_are_an_event_of_its_span(sim: Simulator) -> None:
    telemetry = Telemetry()
    slow = SinkSpec(_Slow(), Buffer(1, OnFull.DROP_NEWEST))
    result = await _run(sim, telemetry, {}, others=[slow])
    assert result.outcome == "completed"
    event = _events(telemetry)["rillet.sink_drops"]
    assert event["rillet.sink"] == "slow"
    assert int(event["rillet.dropped"]) > 0


async def test_rillet_run_exports_its_trace_and_metrics_over_otlp_http(
    collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    config = parse_config(
        {
            "request": {"model": MODEL, "max_tokens": 512, "prompt": "Rivers."},
            "sinks": [{"type": "file", "path": str(tmp_path / "report.md")}],
            "otel": {"enabled": True, "endpoint": collector.endpoint, "service_name": "rillet-test"},
        },
        tmp_path / "run.toml",
    )
    assert await run_report(config, simulator="fast") == 0

    (resource,) = {
        tuple(sorted((kv.key, kv.value.string_value) for kv in spans.resource.attributes))
        for spans in collector.resource_spans()
    }
    assert ("service.name", "rillet-test") in resource
    assert ("deployment.environment", "test") in resource
    spans = collector.spans()
    (stream,) = [span for span in spans if span.name == f"chat {MODEL}"]
    (attempt,) = [span for span in spans if span.name == SDK_SPAN]
    assert attempt.trace_id == stream.trace_id
    assert attempt.parent_span_id == stream.span_id
    assert {kv.key: kv.value.string_value for kv in stream.attributes}["rillet.outcome"] == "completed"
    assert collector.metric_names() == GENAI_METRICS


def test_otel_without_its_extra_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sinks.otel", None)  # as if the otel extra were not installed
    with pytest.raises(ConfigError) as refused:
        build_otel_sink(OtelConfig(enabled=True))
    assert str(refused.value).startswith("otel.enabled needs the otel extra (pip install 'rillet[otel]')")
    assert "\n" not in str(refused.value)
