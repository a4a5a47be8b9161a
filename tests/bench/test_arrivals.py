"""Arrival processes: seeded Poisson and gamma inter-arrivals have the rate and spread asked for."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from pipeline.apps.bench.arrivals import arrival_offsets

N = 20_000


def _gaps(rate: float, burstiness: float, seed: int = 7) -> list[float]:
    offsets = list(itertools.islice(arrival_offsets(rate, burstiness, seed), N + 1))
    return [b - a for a, b in itertools.pairwise(offsets)]


@pytest.mark.parametrize(
    ("rate", "burstiness"),
    [(10.0, 1.0), (250.0, 1.0), (10.0, 0.25), (10.0, 4.0)],
    ids=["poisson-10", "poisson-250", "bursty", "smooth"],
)
def test_rate_and_coefficient_of_variation(rate: float, burstiness: float) -> None:
    """Mean gap is 1/rate and CV is 1/sqrt(burstiness), within sampling tolerance."""
    gaps = _gaps(rate, burstiness)
    mean = statistics.fmean(gaps)
    cv = statistics.pstdev(gaps) / mean
    assert mean == pytest.approx(1 / rate, rel=0.05)
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=0.05)


def test_seeded_and_first_at_zero() -> None:
    """The same seed gives the same schedule; the first request is due at once."""
    first = list(itertools.islice(arrival_offsets(5.0, 1.0, seed=3), 50))
    again = list(itertools.islice(arrival_offsets(5.0, 1.0, seed=3), 50))
    other = list(itertools.islice(arrival_offsets(5.0, 1.0, seed=4), 50))
    assert first == again != other
    assert first[0] == 0.0
    assert first == sorted(first)


def test_infinite_rate_sends_everything_at_once() -> None:
    """``inf``: every request due at offset 0, as vLLM's ``--request-rate inf``."""
    assert set(itertools.islice(arrival_offsets(math.inf), 100)) == {0.0}


def test_bad_rate_is_refused() -> None:
    """A rate of 0 is a mistake, not an infinitely slow run."""
    with pytest.raises(ValueError, match="rate"):
        next(arrival_offsets(0.0))
