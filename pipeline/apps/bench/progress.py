"""Progress while a point runs, on stderr: a rich bar on a terminal, a plain line every few seconds
elsewhere (a pipe, a CI log), each with done/total, errors, ETA and the live TTFT p50.

Workers may be other processes, so what they report fits a shared array of integers: per worker,
done and failed counts and a histogram of TTFT in log buckets 5 % wide, from which the parent
reads the median to within a bucket. The bar is redrawn by this task, never by a thread of rich's
own, so the client's event loop is the only thing that runs during a measurement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO

import anyio

DONE, FAILED = 0, 1
"""Slots of a worker's progress counters; the TTFT histogram follows."""

RATIO = 1.05
LOWEST = 1e-4
"""TTFT buckets: [LOWEST·RATIO^i, LOWEST·RATIO^(i+1)) seconds, the last one open-ended."""
BUCKETS = 330
"""Up to about 1,000 s."""
SLOTS = 2 + BUCKETS
"""Integers per worker."""

BAR_INTERVAL = 0.25
LINE_INTERVAL = 2.0
"""Seconds between redraws of the bar, and between plain lines."""


class Counters(Protocol):
    """A worker's slots: a list in-process, a slice of a shared array in a worker process."""

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...


def new_counters() -> list[int]:
    return [0] * SLOTS


def count(counters: Counters, ok: bool, ttft: float | None) -> None:
    """A finished request: done (with its TTFT) or failed."""
    counters[DONE if ok else FAILED] += 1
    if ok and ttft is not None:
        counters[2 + _bucket(ttft)] += 1


def _bucket(seconds: float) -> int:
    if seconds <= LOWEST:
        return 0
    return min(BUCKETS - 1, int(math.log(seconds / LOWEST, RATIO)))


@dataclass(frozen=True, slots=True)
class Snapshot:
    done: int
    failed: int
    ttft_p50: float | None
    """Seconds, the geometric middle of the median's bucket; None before the first TTFT."""

    @classmethod
    def of(cls, counters: Sequence[int], workers: int) -> Snapshot:
        done = failed = 0
        histogram = [0] * BUCKETS
        for w in range(workers):
            base = w * SLOTS
            done += counters[base + DONE]
            failed += counters[base + FAILED]
            for i in range(BUCKETS):
                histogram[i] += counters[base + 2 + i]
        return cls(done, failed, _median(histogram))


def _median(histogram: Sequence[int]) -> float | None:
    total = sum(histogram)
    if not total:
        return None
    seen = 0
    for i, n in enumerate(histogram):
        seen += n
        if 2 * seen >= total:
            return float(LOWEST * RATIO ** (i + 0.5))
    raise AssertionError("unreachable: the running sum reaches the total")


def _eta(snap: Snapshot, elapsed: float, planned: int | None, duration: float | None) -> float | None:
    if duration is not None:
        return max(0.0, duration - elapsed)
    finished = snap.done + snap.failed
    if planned is None or not finished:
        return None
    return elapsed * (planned - finished) / finished


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _ttft(snap: Snapshot) -> str:
    return "–" if snap.ttft_p50 is None else f"{snap.ttft_p50 * 1000:.0f} ms"


def line(label: str, snap: Snapshot, elapsed: float, planned: int | None, duration: float | None) -> str:
    """The plain line: ``concurrency 4: 40/100 done, 1 failed, TTFT p50 103 ms, 0:12 elapsed, ETA 0:18``."""
    total = f"/{planned}" if planned is not None else ""
    return (
        f"{label}: {snap.done + snap.failed}{total} done, {snap.failed} failed, TTFT p50 {_ttft(snap)}, "
        f"{_clock(elapsed)} elapsed, ETA {_clock(_eta(snap, elapsed, planned, duration))}"
    )


async def show_progress(
    stream: TextIO,
    label: str,
    counters: Sequence[int],
    workers: int,
    planned: int | None,
    duration: float | None,
) -> None:
    """Until cancelled: a bar when ``stream`` is a terminal, else a plain line every few seconds."""
    started = time.perf_counter()
    if not stream.isatty():
        while True:
            elapsed = time.perf_counter() - started
            print(
                line(label, Snapshot.of(counters, workers), elapsed, planned, duration),
                file=stream,
                flush=True,
            )
            await anyio.sleep(LINE_INTERVAL)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn()] if planned is not None else []
    columns += [TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), TextColumn("{task.fields[live]}")]
    bar = Progress(*columns, console=Console(file=stream), auto_refresh=False, transient=True)
    total = planned if planned is not None else duration
    task = bar.add_task(label, total=total, eta="--:--", live="")
    with bar:
        while True:
            snap = Snapshot.of(counters, workers)
            elapsed = time.perf_counter() - started
            finished = snap.done + snap.failed
            bar.update(
                task,
                completed=finished if planned is not None else min(elapsed, duration or elapsed),
                eta=_clock(_eta(snap, elapsed, planned, duration)),
                live=f"TTFT p50 {_ttft(snap)} · {snap.failed} errors"
                + ("" if planned else f" · {finished} done"),
            )
            bar.refresh()
            await anyio.sleep(BAR_INTERVAL)
