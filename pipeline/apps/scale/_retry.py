"""Riding out a lost Redis: back off and try again, so nothing already persisted is lost.

Only connection failures are retried (a restart, a network blip, ``LOADING`` while the AOF is
read back); a script's verdict (fenced, full) and any other reply error are final. Appends carry
explicit ids, so retrying one whose reply was lost writes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import coredis.exceptions

T = TypeVar("T")

LOST = (coredis.exceptions.ConnectionError, OSError, TimeoutError)
"""What a Redis restart or a network fault raises (``BusyLoadingError`` is a ``ConnectionError``)."""

INITIAL_S = 0.05
MAX_S = 2.0

log = logging.getLogger("rillet.scale")


async def persist(operation: Callable[[], Awaitable[T]], what: str) -> T:
    """Runs ``operation`` until Redis answers; waits grow from 50 ms to 2 s between tries."""
    delay = INITIAL_S
    while True:
        try:
            return await operation()
        except LOST as exc:
            log.warning("redis unavailable during %s (%s); retrying in %.2f s", what, exc, delay)
            await anyio.sleep(delay)
            delay = min(MAX_S, delay * 2)
