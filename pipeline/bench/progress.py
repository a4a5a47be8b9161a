"""A live progress line on stderr while a point runs, only when stderr is a terminal."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

import anyio

INTERVAL = 0.25


async def show_progress(
    stream: TextIO, label: str, counters: Sequence[int], planned: int | None, duration: float | None
) -> None:
    """Redraws one line until cancelled; ``counters`` alternate done and failed per worker."""
    started = time.perf_counter()
    try:
        while True:
            done, failed = sum(counters[0::2]), sum(counters[1::2])
            elapsed = time.perf_counter() - started
            total = f"/{planned}" if planned is not None else ""
            left = f" of {duration:.0f} s" if duration is not None else ""
            stream.write(
                f"\r\x1b[2K{label}: {done + failed}{total} done, {failed} failed, {elapsed:.1f} s{left}"
            )
            stream.flush()
            await anyio.sleep(INTERVAL)
    finally:
        stream.write("\r\x1b[2K")
        stream.flush()
