"""Poison jobs through a real worker: after ``max_attempts`` takes they land in the dead-letter stream.

Two kinds: a request the API refuses outright (400), and one whose every response is cut off
mid-stream, so each take makes a little progress and still fails. Neither may block the worker:
a good job submitted behind them finishes exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scale_harness import MODEL, Workers, check_job, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from pipeline.apps.simulator import SimulatorSettings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM = SimulatorSettings(tokens_per_s=2000, report_tokens=300)
MAX_ATTEMPTS = 3

REFUSED: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 100,
    "messages": [{"role": "narrator", "content": "No such role: the API answers 400."}],
}
CUT_OFF: dict[str, Any] = {
    **report_request(1),
    "extra_headers": {
        "x-rillet-scenario": "drop",
        "x-rillet-drop-after": "12",
        "x-rillet-drop-continuations": "1",
    },
}


async def test_poison_jobs_are_dead_lettered_with_their_reason(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: object,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """Each is taken ``max_attempts`` times, then dead: its reason in ``P:dead``, one ``end`` in its log."""
    queue, events = scale
    base_url = simulator_process("--tokens-per-s", "2000", "--report-tokens", "300")  # type: ignore[operator]
    config = write_config(
        tmp_path / "worker.toml",
        redis_server.url,  # type: ignore[attr-defined]
        resume={"max_attempts": 2, "wait": False},
        lease_seconds=1.0,
        flush_ms=20,
        max_attempts=MAX_ATTEMPTS,
    )
    refused = await queue.submit(REFUSED)
    cut_off = await queue.submit(CUT_OFF)
    good = await queue.submit(report_request(2))
    workers = Workers(config, base_url)
    try:
        workers.start("--concurrency", "2")
        states = await wait_finished(events, [refused, cut_off, good], within=60)
    finally:
        workers.close()
    dead = {
        entry.field_values[b"job"].decode(): entry.field_values[b"reason"].decode()
        for entry in await events.redis.xrange(queue.keys.dead)
    }
    assert dead.keys() == {refused, cut_off}
    assert dead[refused].startswith("error: 400 invalid_request_error: messages.0.role")
    assert "; gave up after " in dead[cut_off]
    for job in (refused, cut_off):
        assert states[job]["status"] == "dead"
        assert int(states[job]["epoch"]) == MAX_ATTEMPTS
        assert states[job]["error"] == dead[job]
        entries = await events.range(job)
        ends = [json.loads(entry.frame.data) for entry in entries if entry.frame.event == "end"]
        assert len(ends) == 1
        assert ends[0]["outcome"] == "error"
        assert entries[-1].frame.event == "end"
    cut_text = await check_job(events, cut_off, CUT_OFF, SIM)
    assert cut_text.text, "each take of the cut-off job kept what it received"
    assert cut_text.reference.startswith(cut_text.text)
    assert states[good]["status"] == "done"
    check = await check_job(events, good, report_request(2), SIM)
    assert check.text == check.reference
    assert (await events.redis.xpending(queue.keys.jobs, "workers")).pending == 0
