"""Arrival processes of an open loop: when each request is due, as offsets from the run's start.

Inter-arrival times are gamma-distributed with mean ``1 / rate`` and shape ``burstiness``, as in
vLLM: shape 1 is a Poisson process, a lower shape is burstier (coefficient of variation
``1 / sqrt(burstiness)``). Offsets are cumulative, so the sender can wait for each on an absolute
clock: a late send never shifts the ones after it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator


def arrival_offsets(rate: float, burstiness: float = 1.0, seed: int = 0) -> Iterator[float]:
    """Endless arrival offsets in seconds, the first at 0; an infinite rate sends everything at once."""
    if not rate > 0 or not burstiness > 0:
        raise ValueError(f"rate and burstiness must be > 0, got {rate!r} and {burstiness!r}")
    rng = random.Random(f"arrivals:{seed}")
    scale = 0.0 if math.isinf(rate) else 1.0 / (rate * burstiness)
    offset = 0.0
    while True:
        yield offset
        if scale:
            offset += rng.gammavariate(burstiness, scale)
