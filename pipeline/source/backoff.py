"""Waiting between HTTP attempts: exponential backoff with full jitter, bounded by attempts and time.

Follows stamina's opinions (style.md): retries happen only for named failures (the source decides
which), the waits grow as ``uniform(0, min(maximum, initial * 2**(n - 1)))`` ("full jitter", so
many clients hit by one outage spread out), a server's ``retry-after`` is a floor, and the whole
stream gives up when its attempts or its time run out. ``wait=False`` removes the sleeping, not
the accounting: skipped waits still count against the time budget, so tests see the same bounds.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

import anyio
import anyio.lowlevel


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` first, then ``retry-after`` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _number(raw_ms)
        if seconds is not None:
            return seconds / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


class Retries:
    """The retry budget of one logical stream: how long to wait before the next attempt, if any."""

    def __init__(
        self,
        *,
        max_attempts: int,
        max_total_seconds: float,
        initial: float,
        maximum: float,
        wait: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_total_seconds = max_total_seconds
        self.initial = initial
        self.maximum = maximum
        self._wait = wait
        self._rng = rng or random.Random()
        self._start = time.monotonic()
        self.skipped = 0.0
        """Seconds of waiting removed by ``wait=False``: still counted as time spent."""

    def elapsed(self) -> float:
        """Seconds since the stream's first attempt, skipped waits included."""
        return time.monotonic() - self._start + self.skipped

    def delay(
        self, attempts_made: int, *, retry_after: float | None = None, slow: bool = False
    ) -> float | None:
        """The wait before attempt ``attempts_made + 1``, or None when the budget forbids another.

        ``slow`` (a rate limit met mid-stream, which carries no ``retry-after``) takes the ceiling
        rather than a jittered share of it.
        """
        if attempts_made >= self.max_attempts:
            return None
        ceiling = min(self.maximum, self.initial * 2 ** (attempts_made - 1))
        wait = ceiling if slow else self._rng.uniform(0, ceiling)
        wait = max(wait, retry_after or 0.0)
        if self.elapsed() + wait > self.max_total_seconds:
            return None
        return wait

    async def sleep(self, seconds: float) -> None:
        """Waits, or with ``wait=False`` only records the wait; a checkpoint either way."""
        if self._wait:
            await anyio.sleep(seconds)
        else:
            self.skipped += seconds
            await anyio.lowlevel.checkpoint()
