"""What the Prometheus sink, and the OpenTelemetry sink, cost per event, against the 1.1 µs of one
bound inc + observe.

Feeds ``--streams`` interleaved synthetic streams (message_start, ``--deltas`` text deltas with a
running cost estimate every 64, the rillet events the stages add, StreamEnded) to each sink's
``write`` in batches of ``--batch`` items, as the fan-out would, and prints µs per event, best of
``--repeat`` runs. The OpenTelemetry sink (when the ``otel`` extra is installed) traces every stream
as a pipeline would (its span opened by ``trace_stream``, events added and the span ended by the
sink), into the SDK's batch span processor with an exporter that discards, and records the GenAI
metrics into a meter provider that nobody reads. Run: ``python benchmarks/metrics_overhead.py``.
"""

from __future__ import annotations

import argparse
import time

import anyio
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawMessageStartEvent,
    TextDelta,
)
from anthropic.types import (
    Usage as SdkUsage,
)

from pipeline.events import AttemptStarted, CostUpdate, FirstToken, Item, LatencySummary, StreamEnded, Usage
from sinks.prometheus import PrometheusSink

MODEL = "claude-sonnet-4-6"
ESTIMATE_EVERY = 64
"""Deltas between running cost estimates: one a token, at the cost stage's default of 64 tokens."""


def stream(stream_id: str, deltas: int) -> list[Item]:
    message = Message(
        id="msg",
        type="message",
        role="assistant",
        content=[],
        model=MODEL,
        stop_reason=None,
        stop_sequence=None,
        usage=SdkUsage(input_tokens=10, output_tokens=1),
    )
    delta = RawContentBlockDeltaEvent(
        type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text="x")
    )
    gaps = tuple(0.01 for _ in range(deltas - 1))
    items = [
        Item(stream_id, AttemptStarted(1, "initial", ""), 0),
        Item(stream_id, RawMessageStartEvent(type="message_start", message=message), 0),
        Item(stream_id, FirstToken("message_start", 0.1), 0),
        Item(stream_id, FirstToken("delta", 0.2), 0),
        Item(stream_id, FirstToken("text", 0.2), 0),
    ]
    for n in range(1, deltas + 1):
        items.append(Item(stream_id, delta, 0))
        if n % ESTIMATE_EVERY == 0:  # the cost stage's running estimate, which the sink counts live
            items.append(Item(stream_id, CostUpdate(0.01 * n / deltas, True, MODEL, Usage(10, n), 1), 0))
    items += [
        Item(stream_id, CostUpdate(0.01, False, MODEL, Usage(10, deltas), 1), 0),
        Item(stream_id, LatencySummary(0.05, 0.1, 0.2, 0.2, None, 5.0, 0.01, gaps, deltas), 0),
        Item(stream_id, StreamEnded("completed", "end_turn"), 0),
    ]
    return items


def interleave(streams: list[list[Item]]) -> list[Item]:
    return [item for group in zip(*streams, strict=True) for item in group]


async def measure(items: list[Item], batch: int) -> float:
    async with PrometheusSink(address=None) as sink:
        started = time.perf_counter()
        for start in range(0, len(items), batch):
            await sink.write(items[start : start + batch])
        return time.perf_counter() - started


async def measure_otel(items: list[Item], batch: int) -> float:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from sinks.otel import OtelSink

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    try:
        async with OtelSink(tracer_provider=tracer_provider, meter_provider=meter_provider) as sink:
            started = time.perf_counter()
            for stream_id in dict.fromkeys(item.stream_id for item in items):
                with sink.trace_stream(stream_id, {"model": MODEL}):
                    pass  # the span stays open: the sink ends it at the stream's StreamEnded
            for start in range(0, len(items), batch):
                await sink.write(items[start : start + batch])
            return time.perf_counter() - started
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items = interleave([stream(f"s{n}", args.deltas) for n in range(args.streams)])
    best = min(anyio.run(measure, items, args.batch) for _ in range(args.repeat))
    print(
        f"{len(items)} events ({args.streams} streams x {args.deltas} deltas, one gap observed per delta), "
        f"batches of {args.batch}: {best / len(items) * 1e6:.2f} µs per event"
    )
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        print("otel: not installed (pip install 'rillet[otel]')")
        return
    otel = min(anyio.run(measure_otel, items, args.batch) for _ in range(args.repeat))
    print(
        f"otel sink, same events: {otel / len(items) * 1e6:.2f} µs per event "
        f"({otel / best:.2f}x the prometheus sink)"
    )


if __name__ == "__main__":
    main()
