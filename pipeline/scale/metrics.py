"""What a worker or replica counts, on a registry of its own served at its own ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

APPEND_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScaleMetrics:
    """Counters named in reference/scale-out.md §6, plus job outcomes and append latency."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reclaims = Counter(
            "rillet_job_reclaims", "Jobs taken over from a worker whose lease lapsed", registry=r
        )
        self.fenced = Counter(
            "rillet_fenced_appends", "Appends or renewals refused because the job was taken over", registry=r
        )
        self.resets = Counter(
            "rillet_reset_events", "Browser cursors no longer in a log, answered with reset", registry=r
        )
        self.extra_tokens = Counter(
            "rillet_resume_extra_output_tokens",
            "Output tokens billed again because of takeovers (as far as the worker can know them)",
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
