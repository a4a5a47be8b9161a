"""Start-up admission: streams started together begin a few per loop turn, in their order, all of them."""

from __future__ import annotations

from collections import Counter

import anyio
import anyio.lowlevel
import pytest

from pipeline.admission import Admission


@pytest.mark.anyio
async def test_streams_started_together_begin_a_few_per_loop_turn_in_order() -> None:
    admission = Admission(per_turn=4)
    turn = 0
    begun: list[tuple[int, int]] = []

    async def tick() -> None:
        nonlocal turn
        while True:
            await anyio.lowlevel.checkpoint()
            turn += 1

    async def stream(index: int) -> None:
        await admission()
        begun.append((index, turn))

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        async with anyio.create_task_group() as streams:
            for index in range(40):
                streams.start_soon(stream, index)
        tg.cancel_scope.cancel()
    assert [index for index, _ in begun] == list(range(40))
    per_turn = Counter(turn for _, turn in begun)
    assert max(per_turn.values()) <= 4
    assert len(per_turn) >= 10
