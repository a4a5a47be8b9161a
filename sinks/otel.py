"""OpenTelemetry: one trace per logical stream, and the GenAI semantic-convention client metrics.

Imported only when ``[otel]`` is enabled (it needs the ``otel`` extra), so a run without it pays
nothing. The pipeline runs each stream inside :meth:`OtelSink.trace_stream`, which makes the
stream's ``chat {model}`` span current: the SDK's call spans (one per attempt, since the source
owns every attempt and the SDK retries nothing) start in that context and become its children, as
long as the client was made with this sink's ``tracer_provider`` (:func:`pipeline.client.make_client`).

The span is ended, and the metrics recorded, when the sink reads the stream's ``rillet.end``: the
sink sees the items after the stages have made them (cost, latency), in its own task. Each event and
the span's end carry the time their item was received, not the time the sink got to it, so a sink
running behind distorts no timing. Every metric is recorded once per stream, at its end, when the
outcome (``error.type``) and the response model are known.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from pipeline.events import AttemptStarted, CostUpdate, FirstToken, Item, LatencySummary, StreamEnded
from pipeline.fanout import StatisticsProvider

SCOPE = "rillet"
MAX_OPEN_STREAMS = 100_000
"""Streams tracked at once: one whose end never came is forgotten (its span ended) past this."""
PROVIDER = "anthropic"

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
"""The explicit bucket boundaries the GenAI semantic conventions advise for each metric."""


def input_tokens(cost: CostUpdate) -> int:
    """All the input, cached or not, as the GenAI conventions count it (the API counts cache reads and
    writes apart; the SDK's call spans give them as ``gen_ai.usage.cache_*.input_tokens``)."""
    usage = cost.usage
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


class _Stream:
    """What a stream's end needs: its span, the first item's time, and what the stages reported."""

    __slots__ = (
        "cost",
        "drops",
        "first_ns",
        "latency",
        "request_model",
        "response_id",
        "response_model",
        "span",
    )

    def __init__(self, span: trace.Span | None, request_model: str, drops: dict[str, int]) -> None:
        self.span = span
        self.request_model = request_model
        self.drops = drops
        self.first_ns: int | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.cost: CostUpdate | None = None
        self.latency: LatencySummary | None = None


def _exporter_endpoint(endpoint: str | None, signal: str) -> str | None:
    return None if endpoint is None else f"{endpoint.rstrip('/')}/v1/{signal}"


def _resource(service_name: str | None) -> Resource:
    """``service_name`` wins; else ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES``; else rillet."""
    if service_name is not None:
        return Resource.create({"service.name": service_name})
    found = Resource.create()
    if str(found.attributes.get("service.name", "")).startswith("unknown_service"):
        return found.merge(Resource({"service.name": SCOPE}))
    return found


def _abandon(stream: _Stream, why: str) -> None:
    """Ends the span of a stream whose end the sink will not see (dropped by a full buffer, or never sent)."""
    if stream.span is not None:
        stream.span.set_status(Status(StatusCode.ERROR, why))
        stream.span.end()


async def _shut_down(provider: TracerProvider | MeterProvider) -> None:
    await anyio.to_thread.run_sync(provider.shutdown)


class OtelSink:
    """Traces and GenAI metrics of every stream the pipeline runs.

    ``tracer_provider`` and ``meter_provider`` (tests give in-memory ones) are used as given and
    left open; without them the sink builds OTLP/HTTP exporting ones, configured by the standard
    ``OTEL_*`` variables, ``endpoint`` and ``service_name`` winning over them, and flushes and shuts
    them down at its exit.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        endpoint: str | None = None,
        service_name: str | None = None,
        name: str = "otel",
    ) -> None:
        self.name = name
        self._owned: list[TracerProvider | MeterProvider] = []
        if tracer_provider is None:
            tracer_provider = TracerProvider(resource=_resource(service_name))
            tracer_provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=_exporter_endpoint(endpoint, "traces")))
            )
            self._owned.append(tracer_provider)
        if meter_provider is None:
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=_exporter_endpoint(endpoint, "metrics"))
            )
            meter_provider = MeterProvider(resource=_resource(service_name), metric_readers=[reader])
            self._owned.append(meter_provider)
        self.tracer_provider = tracer_provider
        self._tracer = tracer_provider.get_tracer(SCOPE)
        meter: metrics.Meter = meter_provider.get_meter(SCOPE)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to generate first token for successful responses.",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
        )
        self._tpot = meter.create_histogram(
            "gen_ai.server.time_per_output_token",
            unit="s",
            description="Time per output token generated after the first token for successful responses.",
            explicit_bucket_boundaries_advisory=TPOT_BUCKETS,
        )
        self._streams: dict[str, _Stream] = {}
        self._closed = False
        self._fanout: StatisticsProvider | None = None
        # perf_counter_ns → ns since the epoch, which span times are in.
        self._epoch_offset = time.time_ns() - time.perf_counter_ns()

    def observe_fanout(self, provider: StatisticsProvider) -> None:
        """Called by the fan-out: a stream's span tells how many items each sink dropped meanwhile."""
        self._fanout = provider

    def _drops(self) -> dict[str, int]:
        if self._fanout is None:
            return {}
        return {lane.name: lane.dropped for lane in self._fanout()}

    @contextmanager
    def trace_stream(self, stream_id: str, request: dict[str, Any]) -> Iterator[None]:
        """Runs the stream (its source's attempts included) with its span current."""
        model = str(request.get("model", ""))
        span = self._tracer.start_span(
            f"chat {model}",
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": model,
                "rillet.stream_id": stream_id,
            },
        )
        self._streams[stream_id] = _Stream(span, model, self._drops())
        # The outcome sets the status at the stream's end: a cancellation passing through is not an error.
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield

    def _open(self, stream_id: str, stream: _Stream) -> _Stream:
        if len(self._streams) >= MAX_OPEN_STREAMS:
            _abandon(self._streams.pop(next(iter(self._streams))), "too many streams open at once")
        self._streams[stream_id] = stream
        return stream

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in self._streams.values():
            _abandon(stream, "the sink closed before the stream ended")
        self._streams.clear()
        # Each flushes what is left, retrying up to OTEL_EXPORTER_OTLP_TIMEOUT: side by side, not in turn.
        async with anyio.create_task_group() as flushes:
            for provider in self._owned:
                flushes.start_soon(_shut_down, provider)

    async def write(self, batch: Sequence[Item]) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        for item in batch:
            kind = getattr(item.event, "type", None)
            if kind is None or not (kind.startswith("rillet.") or kind == "message_start"):
                continue
            stream = self._streams.get(item.stream_id)
            if stream is None:  # a stream not run by a Pipeline: metrics only
                stream = self._open(item.stream_id, _Stream(None, "", self._drops()))
            if stream.first_ns is None:
                stream.first_ns = item.received_ns
            self._observe(stream, item, kind)

    def _event(self, stream: _Stream, item: Item, name: str, attributes: dict[str, Any]) -> None:
        if stream.span is not None:
            stream.span.add_event(name, attributes, timestamp=item.received_ns + self._epoch_offset)

    def _observe(self, stream: _Stream, item: Item, kind: str) -> None:
        event = item.event
        if kind == "message_start":
            stream.response_id = stream.response_id or event.message.id
            stream.response_model = str(event.message.model)
        elif kind == "rillet.attempt":
            attempt: AttemptStarted = event
            if attempt.attempt > 1:
                self._event(
                    stream,
                    item,
                    "rillet.resume",
                    {
                        "rillet.attempt": attempt.attempt,
                        "rillet.resume.reason": attempt.reason,
                        "rillet.resume.strategy": attempt.strategy,
                    },
                )
        elif kind == "rillet.first_token":
            first: FirstToken = event
            self._event(
                stream,
                item,
                "rillet.first_token",
                {"rillet.first_token.kind": first.kind, "rillet.seconds": first.seconds},
            )
        elif kind == "rillet.repetition":
            self._event(
                stream,
                item,
                "rillet.repetition",
                {
                    "rillet.repetition.period": event.period,
                    "rillet.repetition.repeats": event.repeats,
                    "rillet.repetition.action": event.action,
                },
            )
        elif kind == "rillet.cost":
            stream.cost = event
        elif kind == "rillet.latency":
            stream.latency = event
        elif kind == "rillet.end":
            self._end(stream, item)
            del self._streams[item.stream_id]

    def _end(self, stream: _Stream, item: Item) -> None:
        end: StreamEnded = item.event
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": stream.request_model or stream.response_model or "",
        }
        if stream.response_model is not None:
            attributes["gen_ai.response.model"] = stream.response_model
        if end.error_type is not None:
            attributes["error.type"] = end.error_type
        start = stream.first_ns if stream.first_ns is not None else item.received_ns
        self._duration.record((item.received_ns - start) / 1e9, attributes)
        cost, latency = stream.cost, stream.latency
        if cost is not None:
            self._tokens.record(input_tokens(cost), {**attributes, "gen_ai.token.type": "input"})
            self._tokens.record(cost.usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if latency is not None and end.outcome == "completed":
            if latency.to_first_delta is not None:
                self._ttft.record(latency.to_first_delta, attributes)
            if latency.time_per_output_token is not None:
                self._tpot.record(latency.time_per_output_token, attributes)
        if stream.span is not None:
            self._end_span(stream, item, end)

    def _end_span(self, stream: _Stream, item: Item, end: StreamEnded) -> None:
        span = stream.span
        assert span is not None
        for sink, dropped in self._drops().items():
            grown = dropped - stream.drops.get(sink, 0)
            if grown > 0:
                self._event(stream, item, "rillet.sink_drops", {"rillet.sink": sink, "rillet.dropped": grown})
        span.set_attribute("rillet.outcome", end.outcome)
        if stream.response_id is not None:
            span.set_attribute("gen_ai.response.id", stream.response_id)
        if stream.response_model is not None:
            span.set_attribute("gen_ai.response.model", stream.response_model)
        if end.stop_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", (end.stop_reason,))
        cost = stream.cost
        if cost is not None:
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens(cost))
            span.set_attribute("gen_ai.usage.output_tokens", cost.usage.output_tokens)
            span.set_attribute("rillet.attempts", cost.attempts)
            if cost.usd == cost.usd:  # nan: genai-prices could not price the model
                span.set_attribute("rillet.cost_usd", cost.usd)
        if end.error_type is not None:
            span.set_attribute("error.type", end.error_type)
            span.set_status(Status(StatusCode.ERROR, end.error or end.error_type))
        span.end(end_time=item.received_ns + self._epoch_offset)
