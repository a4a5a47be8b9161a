"""The ``[bench]`` section: what a benchmark run is, validated once at the edge.

CLI flags override the file, the file overrides these defaults. A list of concurrencies or rates
is a sweep: one result per point, in one invocation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config import DEFAULT_MODEL

GOODPUT_METRICS = ("ttft", "tpot", "e2el")
"""The SLOs vLLM's ``--goodput`` accepts, in milliseconds: a good request meets every one given."""


UNBOUNDED_POOL = 10_000
"""Connection pool of an uncapped open loop: large enough that the pool never queues a request."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatorConfig(_Strict):
    """How the embedded simulator behaves when no API key is set (ignored against the real API)."""

    scenario: str = "report"
    ttft_ms: float = Field(250.0, ge=0)
    tokens_per_s: float = Field(100.0, ge=0)
    jitter: float = Field(0.0, ge=0, lt=1)
    seed: int = 0


class BenchConfig(_Strict):
    """One ``rillet bench`` invocation: load, workload, outputs and guards."""

    model: str = DEFAULT_MODEL
    num_requests: int | None = Field(None, ge=1)
    """Measured requests per point; default 100 unless ``duration`` is given."""
    duration: float | None = Field(None, gt=0)
    """Seconds of sending per point; requests in flight at the deadline still finish."""
    concurrency: list[int] | None = None
    """Closed loop: this many requests always in flight. Default [10] unless a rate is given."""
    request_rate: list[float] | None = None
    """Open loop: requests per second (``inf``: all at once), sent on an absolute clock."""
    burstiness: float = Field(1.0, gt=0)
    """Gamma shape of the inter-arrival times: 1 is Poisson, lower is burstier (CV = 1/sqrt(B))."""
    max_concurrency: int | None = Field(None, ge=1)
    """Open loop only: a cap on requests in flight; the wait for a slot is reported apart from TTFT."""
    warmup: int | None = Field(None, ge=0)
    """Unmeasured requests first. Closed loop: the loop's own first requests (default: one wave,
    ``concurrency``). Open loop: short ones (``max_tokens`` 16) before the clock starts (default:
    about one per expected slot, up to 64)."""
    input_tokens: int = Field(256, ge=8)
    input_tokens_sd: float = Field(0.0, ge=0)
    output_tokens: int = Field(128, ge=1)
    """``max_tokens`` of every request."""
    prompts: Path | None = None
    """A JSONL file, one object a line with ``prompt`` or ``messages``; replaces synthetic prompts."""
    seed: int = 0
    goodput: dict[str, float] = Field(default_factory=dict)
    percentiles: list[float] = Field(default_factory=lambda: [50.0, 90.0, 95.0, 99.0])
    workers: int = Field(1, ge=1, le=256)
    result_json: Path | None = None
    """One file: an object for one point, an array of them for a sweep."""
    save_result: bool = False
    """vLLM's: one result file per point (in ``result_dir``, default the current directory)."""
    result_dir: Path | None = None
    """One vLLM-shaped JSON object per point, named by its load point, and ``summary.json``."""
    result_filename: str | None = None
    """vLLM's: the point's file name (a sweep adds the load point to it)."""
    label: str | None = None
    """Names the run in file names and in report, compare and plot (vLLM's ``--label``)."""
    save_requests: Path | None = None
    plot: Path | None = None
    max_cost: float | None = Field(None, ge=0)
    truth: bool | None = None
    """Check the measurement against the simulator's ground truth; default: when it is embedded."""
    zoom: bool = False
    """Plot latency axes fitted to the data instead of starting at zero."""
    progress: Literal["auto", "on", "off"] = "auto"
    """``auto`` (or ``on``): a bar on a terminal, a plain line every few seconds elsewhere."""
    wire: bool = True
    """Wire times (kernel receive stamps, read by a thread); off: the SDK's transport, user-space stamps."""
    metrics_address: str | None = None
    """Serve the run's Prometheus metrics on ``host:port`` while it lasts."""
    simulator: SimulatorConfig = SimulatorConfig()

    @field_validator("goodput")
    @classmethod
    def _known_slos(cls, value: dict[str, float]) -> dict[str, float]:
        for key, ms in value.items():
            if key not in GOODPUT_METRICS:
                raise ValueError(
                    f"unknown goodput metric {key!r}; expected one of {', '.join(GOODPUT_METRICS)}"
                )
            if not ms > 0:
                raise ValueError(f"goodput {key}: expected milliseconds > 0, got {ms!r}")
        return value

    @field_validator("percentiles")
    @classmethod
    def _p99_always(cls, value: list[float]) -> list[float]:
        for p in value:
            if not 0 < p < 100:
                raise ValueError(f"percentile {p!r} is not between 0 and 100 (exclusive)")
        return sorted({*value, 99.0})

    @field_validator("concurrency")
    @classmethod
    def _positive_concurrency(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError(f"concurrency must be a non-empty list of integers >= 1, got {value!r}")
        return value

    @field_validator("request_rate")
    @classmethod
    def _positive_rate(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or not all(r > 0 for r in value)):
            raise ValueError(f"request_rate must be a non-empty list of rates > 0 (or inf), got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_load(self) -> BenchConfig:
        if self.concurrency is not None and self.request_rate is not None:
            raise ValueError("give either concurrency (closed loop) or request_rate (open loop), not both")
        if self.num_requests is not None and self.duration is not None:
            raise ValueError("give either num_requests or duration, not both")
        if self.max_concurrency is not None and self.request_rate is None:
            raise ValueError("max_concurrency caps an open loop: give it with request_rate")
        return self

    @property
    def open_loop(self) -> bool:
        return self.request_rate is not None

    @property
    def points(self) -> list[float]:
        """The sweep: rates for an open loop, concurrencies for a closed one."""
        if self.request_rate is not None:
            return list(self.request_rate)
        return [float(c) for c in self.concurrency or [10]]

    @property
    def requests_per_point(self) -> int | None:
        """None when the point is bounded by duration instead."""
        if self.duration is not None:
            return None
        return self.num_requests or 100

    def warmup_for(self, point: float) -> int:
        """Enough warm-up requests to open one connection per slot likely in use."""
        if self.warmup is not None:
            return self.warmup
        if not self.open_loop:
            return int(point)
        expected = self.slots(point) if math.isinf(point) else math.ceil(point)
        return min(expected, self.max_concurrency or expected, 64)

    def slots(self, point: float) -> int:
        """Requests in flight at most at ``point``: what the connection pool must hold."""
        if not self.open_loop:
            return int(point)
        return self.max_concurrency or UNBOUNDED_POOL
