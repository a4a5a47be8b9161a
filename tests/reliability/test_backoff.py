"""Backoff bounds and ``retry-after`` parsing."""

from __future__ import annotations

import email.utils
import random

import pytest

from pipeline.source.backoff import Retries, retry_after_seconds


def retries(max_attempts: int = 5, max_total_seconds: float = 100.0) -> Retries:
    return Retries(
        max_attempts=max_attempts,
        max_total_seconds=max_total_seconds,
        initial=0.5,
        maximum=4.0,
        wait=False,
        rng=random.Random(7),
    )


@pytest.mark.parametrize("attempts_made", [1, 2, 3, 4])
def test_full_jitter_stays_under_the_ceiling(attempts_made: int) -> None:
    """Each wait is uniform in [0, min(maximum, initial * 2**(n - 1))]."""
    budget = retries(max_attempts=10)
    ceiling = min(4.0, 0.5 * 2 ** (attempts_made - 1))
    waits = [budget.delay(attempts_made) for _ in range(500)]
    assert all(wait is not None and 0 <= wait <= ceiling for wait in waits)
    assert max(w for w in waits if w is not None) > ceiling * 0.9


def test_slow_takes_the_ceiling_and_retry_after_is_a_floor() -> None:
    """A mid-stream rate limit waits the whole ceiling; a server's retry-after is never cut short."""
    budget = retries()
    assert budget.delay(3, slow=True) == 2.0
    assert budget.delay(1, retry_after=3.5) == 3.5


def test_attempts_are_bounded() -> None:
    """No wait is offered once ``max_attempts`` attempts were made."""
    assert retries(max_attempts=3).delay(3) is None


@pytest.mark.anyio
async def test_total_time_is_bounded_even_without_waiting() -> None:
    """Skipped waits still count, so ``wait=False`` keeps the time bound."""
    budget = retries(max_total_seconds=5.0, max_attempts=100)
    await budget.sleep(4.0)
    assert budget.elapsed() >= 4.0
    assert budget.delay(1, retry_after=2.0) is None
    assert budget.delay(1, retry_after=0.5) == 0.5


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after-ms": "1500", "retry-after": "9"}, 1.5, id="ms-first"),
        pytest.param({"retry-after": "2"}, 2.0, id="seconds"),
        pytest.param({"retry-after": "0.25"}, 0.25, id="fraction"),
        pytest.param({"retry-after-ms": "soon", "retry-after": "3"}, 3.0, id="bad-ms-falls-back"),
        pytest.param({"retry-after": "-1"}, None, id="negative"),
        pytest.param({"retry-after": "nan"}, None, id="nan"),
        pytest.param({"retry-after": "whenever"}, None, id="garbage"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """``retry-after-ms`` wins; bad values are ignored rather than trusted."""
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date() -> None:
    """An HTTP date is turned into seconds from now, never negative."""
    now = 1_700_000_000.0
    assert retry_after_seconds({"retry-after": email.utils.formatdate(now + 30, usegmt=True)}, now) == 30.0
    assert retry_after_seconds({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now) == 0.0
