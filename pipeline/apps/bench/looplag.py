"""Event-loop lag: how late a timer fires, sampled through the run.

When the client is the bottleneck, every callback waits its turn and so does this sampler's timer;
its lateness is a direct reading of the delay a response's bytes wait before the source can stamp
them. asyncio rounds timeouts up to the millisecond, so an idle loop reads up to about 1 ms.
"""

from __future__ import annotations

import resource
import time
from array import array

import anyio

INTERVAL = 0.02
"""Seconds between samples: 50 wake-ups a second cost nothing measurable."""


class LoopLagSampler:
    """Run :meth:`run` in a task group; read :attr:`samples` (seconds late) afterwards."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.samples = array("d")

    async def run(self) -> None:
        """Samples until cancelled."""
        interval = self.interval
        clock = time.perf_counter
        while True:
            due = clock() + interval
            await anyio.sleep(interval)
            self.samples.append(max(0.0, clock() - due))


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
