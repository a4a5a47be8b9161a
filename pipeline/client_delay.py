"""The client's own delay: from an event's arrival at the socket to its hand-over to the sinks.

Wire-time TTFT and end to end (:mod:`pipeline.stages.latency`) are stamped where bytes arrive, so
they show the server's pace even when the client cannot keep up; issue 19 measured an end to end of
12.2 s for streams whose sinks got their last event after 25-30 s. This delay is that backlog:
parsing, the wait for a busy event loop, a full source buffer, the stages. The runner stamps each
item as it hands it to the fan-out (:attr:`~pipeline.events.Item.delivered_ns`) and counts its
delay since ``received_ns`` into a fixed-bucket histogram: an item a stage derives carries the
receive stamp of the event that caused it, one a stage makes at its end (a summary) is stamped as
it is made. Every item counts, so the hot path is a stamp and a bisection; a stream of any length
costs the same few hundred bytes, and histograms of streams and processes add up exactly. With
wire stamps (``make_client(wire=True)``, as ``rillet bench`` has) arrival is the kernel's, so the
time bytes wait for a busy loop to read them counts too; with the default client's stamps, taken
as the loop reads, it does not.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from pipeline.events import Item

DELAY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
"""Upper bounds in seconds, shared with ``rillet_client_delay_seconds``: from a client that keeps up
(tens of microseconds) to one minutes behind."""

_BOUNDS_NS = tuple(round(bound * 1e9) for bound in DELAY_BUCKETS)
_clock = time.perf_counter_ns


class ClientDelay:
    """A histogram of delays in seconds; ``counts[i]`` holds those in ``(DELAY_BUCKETS[i-1],
    DELAY_BUCKETS[i]]``, the last entry those above every bound."""

    __slots__ = ("counts", "max_ns", "sum_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(DELAY_BUCKETS) + 1)
        self.sum_ns = 0
        self.max_ns = 0

    def deliver(self, item: Item) -> None:
        """Stamps ``item`` as handed to the sinks now, and counts its delay (0.4 µs, inlined for that)."""
        item.delivered_ns = now = _clock()
        delay_ns = now - item.received_ns
        self.counts[bisect_left(_BOUNDS_NS, delay_ns)] += 1
        self.sum_ns += delay_ns
        if delay_ns > self.max_ns:
            self.max_ns = delay_ns

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def mean(self) -> float:
        """Seconds; 0 when empty."""
        count = self.count
        return self.sum_ns / count / 1e9 if count else 0.0

    @property
    def maximum(self) -> float:
        """Seconds, exact; 0 when empty."""
        return self.max_ns / 1e9

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0-1) in seconds, interpolated within its bucket as Prometheus'
        ``histogram_quantile`` does, and never above the exact maximum; 0 when empty."""
        count = self.count
        if not count:
            return 0.0
        rank = q * count
        seen = 0
        for index, in_bucket in enumerate(self.counts):
            if in_bucket and seen + in_bucket >= rank:
                low = DELAY_BUCKETS[index - 1] if index else 0.0
                high = DELAY_BUCKETS[index] if index < len(DELAY_BUCKETS) else self.maximum
                estimate = low + (high - low) * (rank - seen) / in_bucket
                return min(estimate, self.maximum)
            seen += in_bucket
        return self.maximum

    def merge(self, other: ClientDelay) -> None:
        """Adds ``other``'s counts: several streams' or processes' histograms make one."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum_ns += other.sum_ns
        self.max_ns = max(self.max_ns, other.max_ns)

    def to_json(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum_ns": self.sum_ns, "max_ns": self.max_ns}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientDelay:
        delay = cls()
        delay.counts = [int(n) for n in data["counts"]]
        delay.sum_ns, delay.max_ns = int(data["sum_ns"]), int(data["max_ns"])
        return delay

    @classmethod
    def merged(cls, delays: Iterable[ClientDelay]) -> ClientDelay:
        total = cls()
        for delay in delays:
            total.merge(delay)
        return total
