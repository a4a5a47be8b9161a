"""Summary statistics computed the way vLLM's ``bench serve`` computes them, so figures compare.

Percentiles interpolate linearly between closest ranks (numpy's default method), the standard
deviation is the population one (``np.std``), and an empty sample gives zeros, as vLLM's
``np.mean(values or 0)`` does. Always computed over every sample: several workers' samples are
merged first, never their percentiles averaged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of an ascending sequence; 0 when it is empty."""
    n = len(ordered)
    if n == 0:
        return 0.0
    rank = p / 100 * (n - 1)
    low = math.floor(rank)
    high = min(low + 1, n - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentile_label(p: float) -> str:
    """vLLM's key spelling: ``p99``, ``p99.9``."""
    return f"p{int(p)}" if int(p) == p else f"p{p}"


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    mean: float
    median: float
    std: float
    maximum: float
    percentiles: dict[float, float]

    @classmethod
    def of(cls, values: Iterable[float], percentiles: Sequence[float]) -> Summary:
        ordered = sorted(values)
        n = len(ordered)
        mean = math.fsum(ordered) / n if n else 0.0
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / n) if n else 0.0
        return cls(
            count=n,
            mean=mean,
            median=percentile(ordered, 50),
            std=std,
            maximum=ordered[-1] if n else 0.0,
            percentiles={p: percentile(ordered, p) for p in percentiles},
        )

    def keys(self, name: str, scale: float = 1000.0, unit: str = "ms") -> dict[str, float]:
        """``mean_/median_/std_/p{P}_{name}_{unit}`` as in vLLM's result JSON."""
        out = {
            f"mean_{name}_{unit}": self.mean * scale,
            f"median_{name}_{unit}": self.median * scale,
            f"std_{name}_{unit}": self.std * scale,
        }
        for p, value in self.percentiles.items():
            out[f"{percentile_label(p)}_{name}_{unit}"] = value * scale
        return out


def peak_overlap(intervals: Iterable[tuple[int, int]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    edges = sorted(edge for start, end in intervals for edge in ((start, 1), (end, -1)))
    peak = level = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def mean_overlap(intervals: Sequence[tuple[int, int]], start: int, end: int) -> float:
    """Time-weighted mean number of intervals open over ``[start, end]``: the real concurrency."""
    if end <= start:
        return 0.0
    busy = sum(max(0, min(b, end) - max(a, start)) for a, b in intervals)
    return busy / (end - start)
