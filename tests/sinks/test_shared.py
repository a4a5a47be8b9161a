"""Lanes of a worker's many job fan-outs, reported as one lane per sink."""

from __future__ import annotations

from pipeline.fanout import SinkStatistics
from sinks.shared import Lanes


def lane(name: str, queued: int, max_items: int, written: int, dropped: int = 0) -> SinkStatistics:
    return SinkStatistics(name, queued, max_items, written, dropped, 0, False, None)


def test_counts_sum_over_jobs_and_never_go_down_and_an_idle_sink_reads_empty() -> None:
    lanes = Lanes()
    assert lanes() == ()
    first = [lane("log", 3, 1024, 10, 1)]
    second = [lane("log", 5, 1024, 20)]

    def one() -> tuple[SinkStatistics, ...]:
        return tuple(first)

    def two() -> tuple[SinkStatistics, ...]:
        return tuple(second)

    lanes.add(one)
    lanes.add(two)
    assert lanes() == (lane("log", 8, 2048, 30, 1),)
    first[0] = lane("log", 0, 1024, 13, 1)  # the job ended after three more writes
    lanes.retire(one)
    assert lanes() == (lane("log", 5, 1024, 33, 1),)
    lanes.retire(two)
    lanes.retire(two)  # a fan-out that lent nothing, or was returned already, changes nothing
    assert lanes() == (lane("log", 0, 1024, 33, 1),)
