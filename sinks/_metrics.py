"""rillet's metric families, and the collector that reads the fan-out's lanes at scrape time.

Every family is created on the registry it is given, never on prometheus-client's global default, so
two pipelines in one process keep apart. Names follow Prometheus practice: one prefix (``rillet_``),
base units (``_seconds``), ``_total`` on counters, and bounded labels only. ``docs/metrics.md`` lists
them with their OpenTelemetry GenAI counterparts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from pipeline.client_delay import DELAY_BUCKETS
from pipeline.fanout import SinkStatistics, StatisticsProvider

TTFT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
    0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2, 0.22, 0.24, 0.26, 0.28,
    0.3, 0.33, 0.36, 0.38, 0.4, 0.44, 0.48, 0.52, 0.56, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
    1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.2, 2.4, 2.6, 2.8,
    3.0, 3.3, 3.6, 3.8, 4.0, 4.4, 4.8, 5.0,
    7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Between 0.1 s and 5 s, where Claude's time to first token falls, no bucket is more than 10 %
wider than its lower bound (about a native histogram's schema 3), so a quantile read from them is
off by a few percent at most; coarse from 1 ms (a local simulator) up to 10 minutes (thinking can
hold back the first text that long)."""

GAP_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""A gap between deltas: sub-millisecond bursts up to a stall of half a minute."""

TPOT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Time per output token: 2000 tokens/s down to one token a second."""

DURATION_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
)  # fmt: skip
"""A request's duration: long reports run for many minutes, so the buckets reach an hour."""

TOKEN_TYPES = ("input", "output", "cache_read", "cache_creation")


@dataclass(frozen=True, slots=True)
class Families:
    """The metric families a :class:`~sinks.prometheus.PrometheusSink` updates, on one registry."""

    time_to_first_delta: Histogram
    time_to_first_text: Histogram
    time_to_message_start: Histogram
    delta_gap: Histogram
    time_per_output_token: Histogram
    request_duration: Histogram
    client_delay: Histogram
    tokens: Counter
    tokens_overestimated: Counter
    cost: Counter
    cost_overestimated: Counter
    requests: Counter
    request_errors: Counter
    reconnects: Counter
    repetitions: Counter
    events: Counter
    streams_in_progress: Gauge


def create_families(
    registry: CollectorRegistry,
    *,
    ttft_buckets: Sequence[float] = TTFT_BUCKETS,
    duration_buckets: Sequence[float] = DURATION_BUCKETS,
) -> Families:
    """Registers rillet's families on ``registry``; a registry holds them once (a second call raises)."""

    def histogram(name: str, doc: str, buckets: Sequence[float], *labels: str) -> Histogram:
        return Histogram(name, doc, ("model", *labels), buckets=buckets, registry=registry)

    def counter(name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, registry=registry)

    return Families(
        time_to_first_delta=histogram(
            "rillet_time_to_first_delta_seconds",
            "Time from the request to the first content_block_delta of any kind (TTFT).",
            ttft_buckets,
        ),
        time_to_first_text=histogram(
            "rillet_time_to_first_text_seconds",
            "Time from the request to the first text_delta.",
            ttft_buckets,
        ),
        time_to_message_start=histogram(
            "rillet_time_to_message_start_seconds",
            "Time from the request to the message_start event (the first chunk).",
            ttft_buckets,
        ),
        delta_gap=histogram(
            "rillet_delta_gap_seconds",
            "Time between consecutive content_block_delta events of a stream (per chunk, not per token).",
            GAP_BUCKETS,
        ),
        time_per_output_token=histogram(
            "rillet_time_per_output_token_seconds",
            "(end to end - time to first delta) / (output tokens - 1), tokens from the API's usage.",
            TPOT_BUCKETS,
        ),
        request_duration=histogram(
            "rillet_request_duration_seconds",
            "End-to-end duration of a logical stream, over all its attempts.",
            duration_buckets,
            "outcome",
        ),
        client_delay=Histogram(
            "rillet_client_delay_seconds",
            "Time from an event's arrival at the socket to its hand-over to the sinks (client backlog).",
            buckets=DELAY_BUCKETS,
            registry=registry,
        ),
        tokens=counter(
            "rillet_tokens_total",
            "Tokens by type, counted as a stream runs (output estimated until the API reports it).",
            "model",
            "token_type",
        ),
        tokens_overestimated=counter(
            "rillet_tokens_overestimated_total",
            "Tokens rillet_tokens_total counted beyond a stream's final usage (billed = the difference).",
            "model",
            "token_type",
        ),
        cost=counter(
            "rillet_cost_usd_total", "Cost in US dollars, counted as a stream runs (estimated).", "model"
        ),
        cost_overestimated=counter(
            "rillet_cost_usd_overestimated_total",
            "US dollars rillet_cost_usd_total counted beyond a stream's final cost.",
            "model",
        ),
        requests=counter("rillet_requests_total", "Logical streams ended, by outcome.", "model", "outcome"),
        request_errors=counter(
            "rillet_request_errors_total",
            "Logical streams that ended in an error, by type.",
            "model",
            "error_type",
        ),
        reconnects=counter("rillet_reconnects_total", "HTTP attempts after a stream's first one.", "model"),
        repetitions=counter("rillet_repetition_detections_total", "Repetition loops detected.", "model"),
        events=counter("rillet_events_total", "Items that reached the metrics sink, by event type.", "type"),
        streams_in_progress=Gauge(
            "rillet_streams_in_progress",
            "Logical streams begun and not yet ended.",
            registry=registry,
            multiprocess_mode="livesum",
        ),
    )


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``observe`` for each value, with one ``inc`` per bucket instead of two locked ones per value.

    A report ends with thousands of gaps between deltas; ``observe`` costs 1.3 µs each, more than the
    rest of the sink does per event. This reads the bound child's ``_upper_bounds`` and adds to its
    (non-cumulative) ``_buckets`` and ``_sum``: prometheus-client internals, so a test checks the
    exposition against ``observe`` one value at a time.
    """
    bounds: list[float] = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(sum(values))


class FanOutCollector:
    """Each sink's lane as the fan-out reports it at scrape time: depth, capacity, writes, drops, errors.

    The fan-out's own counters are the truth, so they are read, not mirrored: a scrape always agrees
    with :meth:`pipeline.fanout.FanOut.statistics`. Before a fan-out is observed it reports nothing.
    """

    def __init__(self) -> None:
        self.provider: StatisticsProvider | None = None

    def collect(self) -> Iterable[Metric]:
        lanes: tuple[SinkStatistics, ...] = self.provider() if self.provider is not None else ()
        families = (
            (GaugeMetricFamily, "rillet_sink_queue_depth", "Items waiting in a sink's buffer.", "queued"),
            (GaugeMetricFamily, "rillet_sink_queue_capacity", "The size of a sink's buffer.", "max_items"),
            (
                GaugeMetricFamily,
                "rillet_sink_disabled",
                "1 once a sink was disabled by a failure.",
                "disabled",
            ),
            (CounterMetricFamily, "rillet_sink_written_items", "Items a sink has written.", "written"),
            (CounterMetricFamily, "rillet_sink_dropped_items", "Items dropped by a full buffer.", "dropped"),
            (CounterMetricFamily, "rillet_sink_errors", "Failures of a sink.", "errors"),
        )
        for family_type, name, doc, field in families:
            family = family_type(name, doc, labels=("sink",))
            for lane in lanes:
                family.add_metric((lane.name,), float(getattr(lane, field)))
            yield family
