"""Start-up admission: many streams started at once begin their requests a few per loop turn.

Beginning a request (the SDK building it, the pool assigning it, the connect) costs a few
milliseconds of CPU before its first wait. A thousand streams started together would all take
that step in one turn of the event loop, seconds in which no response byte already received is
read; taken :data:`PER_TURN` at a time, the streams that already run keep being served between.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

PER_TURN = 8
"""Streams that may begin their request per loop turn: about 25 ms of CPU at 3 ms each."""


class Admission:
    """``await admission()`` returns when this stream may begin; callers go in their arrival order."""

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self._slots = anyio.Semaphore(per_turn)

    async def __call__(self) -> None:
        async with self._slots:
            # The slot is held through one loop turn: the streams admitted before this one begin
            # their requests in it, and the next ones are let in only after.
            await anyio.lowlevel.checkpoint()
