"""The cost of a run before it starts, priced by the cost stage's own genai-prices function."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.apps.bench.measure import WARMUP_MAX_TOKENS, expected_requests
from pipeline.apps.bench.settings import BenchConfig
from pipeline.apps.bench.workload import Workload
from pipeline.stages.cost import Billable, price

SAMPLE = 1000
"""Prompts averaged for the planned input size: enough for a mean, cheap to build."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """USD for the whole invocation (every point, warm-up included); None when unknowable."""

    usd: float | None
    requests: float | None
    per_point: tuple[float | None, ...]


def _request_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    return price(model, Billable(input_tokens, 0, 0, 0, 0, output_tokens))


def estimate_cost(settings: BenchConfig, workload: Workload) -> Estimate:
    """Planned tokens priced as if every request used its whole ``max_tokens``: an upper bound."""
    sample = range(min(SAMPLE, settings.requests_per_point or SAMPLE))
    mean_in = round(sum(workload.planned_input_tokens(i) for i in sample) / len(sample))
    mean_out = round(sum(workload.planned_output_tokens(i) for i in sample) / len(sample))
    each = _request_usd(settings.model, mean_in, mean_out)
    warm = _request_usd(
        settings.model, mean_in, min(mean_out, WARMUP_MAX_TOKENS) if settings.open_loop else mean_out
    )
    per_point: list[float | None] = []
    planned = 0.0
    for point in settings.points:
        count = expected_requests(settings, point)
        per_point.append(None if count is None else count * each + settings.warmup_for(point) * warm)
        planned += count or 0
    known = [usd for usd in per_point if usd is not None]
    total = None if len(known) < len(per_point) else math.fsum(known)
    return Estimate(total, planned if total is not None else None, tuple(per_point))
