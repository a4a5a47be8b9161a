"""What a worker or replica counts, on a registry of its own served at its own ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

APPEND_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Up to 10 s: a worker whose CPU is saturated sees its appends wait seconds for its event loop."""


class ScaleMetrics:
    """What a worker can count exactly: takeovers, fencing, outcomes, appends.

    Two counters of reference/scale-out.md §6 are not here. ``rillet_reset_events_total`` counts
    browser cursors a replica answers with ``reset``: a worker never answers a browser. And
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
