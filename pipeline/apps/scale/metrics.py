"""What a worker or replica counts, on a registry of its own served at its own ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.errors import cannot_listen
from sinks.metrics_server import MetricsServer

APPEND_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Up to 10 s: a worker whose CPU is saturated sees its appends wait seconds for its event loop."""


class ScaleMetrics:
    """What a worker can count exactly: takeovers, fencing, outcomes, appends.

    Two counters of reference/scale-out.md §6 are not here. ``rillet_reset_events_total`` counts
    browser cursors a replica answers with ``reset`` (:class:`ReplicaMetrics`): a worker never
    answers a browser. And
    ``rillet_resume_extra_output_tokens_total`` cannot be known by any process: a takeover is
    billed again for the dead attempt's un-persisted tail (tokens the API sent that never reached
    the log) and, in ``continue`` mode, for the words the model restates. The API reports an
    attempt's output tokens once, as a total, in its ``message_delta``, which a killed attempt never
    receives; the log holds text, not tokens, and no tokenizer is at hand to split a total into
    restated and new. ``benchmarks/takeover.py`` measures both against the simulator instead.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reclaims = Counter(
            "rillet_job_reclaims", "Jobs taken over from a worker whose lease lapsed", registry=r
        )
        self.fenced = Counter(
            "rillet_fenced_appends", "Appends or renewals refused because the job was taken over", registry=r
        )
        self.lost = Counter(
            "rillet_job_retakes",
            "Jobs taken again by their own worker because Redis lost their latest writes (a crash)",
            registry=r,
        )
        self.jobs = Counter(
            "rillet_jobs_finished", "Jobs this worker ended, by outcome", ["outcome"], registry=r
        )
        self.running = Gauge("rillet_jobs_running", "Jobs this worker is running", registry=r)
        self.appends = Counter("rillet_log_appended_frames", "Frames appended to job logs", registry=r)
        self.append_seconds = Histogram(
            "rillet_log_append_seconds",
            "One fenced append (one round trip)",
            buckets=APPEND_BUCKETS,
            registry=r,
        )

    def observe_append(self, seconds: float, frames: int) -> None:
        self.append_seconds.observe(seconds)
        self.appends.inc(frames)


@dataclass(frozen=True, slots=True)
class ReplicaCounts:
    """What a serve replica has done so far (its statistics)."""

    connections: int
    connections_total: int
    resets_total: int
    followed_logs: int
    log_readers: int
    xread_calls: int
    log_reloads: int


class ReplicaMetrics(Collector):
    """A replica's ``/metrics``, read from its counts at each scrape (nothing to update on the hot path)."""

    def __init__(
        self, counts: Callable[[], ReplicaCounts], registry: CollectorRegistry | None = None
    ) -> None:
        self.counts = counts
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        c = self.counts()
        yield GaugeMetricFamily(
            "rillet_replica_open_connections", "Browser connections open", value=c.connections
        )
        yield CounterMetricFamily(
            "rillet_replica_connections", "Browser connections opened", value=c.connections_total
        )
        yield CounterMetricFamily(
            "rillet_reset_events",
            "Browser cursors answered with reset (evicted, or lost in a Redis crash)",
            value=c.resets_total,
        )
        yield GaugeMetricFamily(
            "rillet_replica_followed_logs", "Job logs the replica's reader follows", value=c.followed_logs
        )
        yield GaugeMetricFamily(
            "rillet_replica_log_readers", "Blocking Redis readers (one per replica)", value=c.log_readers
        )
        yield CounterMetricFamily(
            "rillet_replica_xread_calls", "Blocking XREAD calls over the followed logs", value=c.xread_calls
        )
        yield CounterMetricFamily(
            "rillet_replica_log_reloads",
            "Followed logs read again whole because Redis lost their tail (or they moved on unseen)",
            value=c.log_reloads,
        )


def serve_metrics(registry: CollectorRegistry, port: int) -> MetricsServer:
    """``--metrics-port``'s server on loopback; a busy port is a configuration error naming it."""
    try:
        return MetricsServer(registry, "127.0.0.1", port)
    except OSError as exc:
        raise cannot_listen("127.0.0.1", port, exc, "--metrics-port") from exc
