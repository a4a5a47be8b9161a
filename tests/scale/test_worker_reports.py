"""A worker's report files: on disk before the job is done, marked when incomplete as ``rillet run``
marks them, and a job whose report cannot be written is retried, then dead-lettered, never ``done``.

Real parts: ``redis-server``, the simulator process, ``rillet worker`` processes, the file system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from scale_harness import RedisServer, Workers, report_request, wait_finished, write_config

from pipeline.apps.scale import RedisEventLog, RedisJobQueue
from pipeline.apps.scale.frames import accumulate, fold

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIM_ARGS = ("--tokens-per-s", "2000", "--report-tokens", "300")
MARKER = "\n\n<!-- rillet: incomplete -->\n> **Incomplete report:** {reason}, after {size:,} characters.\n"
"""The file sink's marker, which ``rillet run`` writes (tests/sinks/test_file_sink.py checks it there)."""

CUT_OFF: dict[str, Any] = {
    **report_request(1),
    "extra_headers": {
        "x-rillet-scenario": "drop",
        "x-rillet-drop-after": "12",
        "x-rillet-drop-continuations": "1",
    },
}


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


async def logged_text(events: RedisEventLog, job_id: str) -> str:
    return accumulate(job_id, fold(await events.range(job_id))).text()


async def dead_reasons(queue: RedisJobQueue) -> dict[str, str]:
    return {
        entry.field_values[b"job"].decode(): entry.field_values[b"reason"].decode()
        for entry in await queue.redis.xrange(queue.keys.dead)
    }


async def test_a_report_that_cannot_be_written_is_retried_then_dead_lettered(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """``<id>.md`` is a folder (a bad path): each take fails to write, the job ends dead, log kept."""
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    out = tmp_path / "reports"
    (out / "blocked.md").mkdir(parents=True)
    job = await queue.submit(report_request(1, max_tokens=80), "blocked")
    good = await queue.submit(report_request(2, max_tokens=80), "fine")
    config = write_config(
        tmp_path / "worker.toml", redis_server.url, lease_seconds=1.0, flush_ms=20, max_attempts=2
    )
    workers = Workers(config, base_url)
    try:
        workers.start("--out-dir", str(out))
        states = await wait_finished(events, [job, good], within=60)
    finally:
        workers.close()
    assert states[job]["status"] == "dead"
    reason = (await dead_reasons(queue))[job]
    assert reason.startswith("cannot write the report: ")
    assert "Is a directory" in reason
    assert states[job]["error"] == reason
    assert int(states[job]["epoch"]) == 2
    entries = await events.range(job)
    assert await logged_text(events, job), "the log is kept"
    assert [entry.frame.event for entry in entries].count("end") == 1
    assert states[good]["status"] == "done"
    assert names(out) == ["blocked.md", "fine.md"]
    assert names(out / "blocked.md") == []
    assert (await queue.redis.xpending(queue.keys.jobs, "workers")).pending == 0


async def test_incomplete_reports_are_marked_as_rillet_run_marks_them(
    scale: tuple[RedisJobQueue, RedisEventLog],
    redis_server: RedisServer,
    simulator_process: object,
    tmp_path: Path,
) -> None:
    """Cut by ``max_tokens``: done, marked; failed on every take: dead, its partial report marked."""
    queue, events = scale
    base_url = simulator_process(*SIM_ARGS)  # type: ignore[operator]
    out = tmp_path / "reports"
    capped = await queue.submit(report_request(1, max_tokens=60), "capped")
    whole = await queue.submit(report_request(2, max_tokens=4000), "whole")
    failed = await queue.submit(CUT_OFF, "failed")
    config = write_config(
        tmp_path / "worker.toml",
        redis_server.url,
        resume={"max_attempts": 1, "wait": False},
        lease_seconds=1.0,
        flush_ms=20,
        max_attempts=2,
    )
    workers = Workers(config, base_url)
    try:
        workers.start("--out-dir", str(out), "--concurrency", "3")
        states = await wait_finished(events, [capped, whole, failed], within=60)
    finally:
        workers.close()
    assert [states[job]["status"] for job in (capped, whole, failed)] == ["done", "done", "dead"]
    assert names(out) == ["capped.md", "failed.md", "whole.md"]

    text = await logged_text(events, capped)
    reason = "the model was cut off (stop_reason 'max_tokens')"
    assert (out / "capped.md").read_text("utf-8") == text + MARKER.format(reason=reason, size=len(text))

    assert (out / "whole.md").read_text("utf-8") == await logged_text(events, whole)

    text = await logged_text(events, failed)
    assert text
    report = (out / "failed.md").read_text("utf-8")
    end = [json.loads(e.frame.data) for e in await events.range(failed) if e.frame.event == "end"]
    assert len(end) == 1
    assert report.startswith(text + "\n\n<!-- rillet: incomplete -->\n> **Incomplete report:** ")
    assert report.endswith(f", after {len(text):,} characters.\n")
    assert "the stream ended with outcome 'error'" in report
