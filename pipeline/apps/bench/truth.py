"""The measurement checked against the simulator's ground truth.

The simulator stamps each event with ``time.perf_counter_ns()`` just before writing it, and a
request with its first bytes' arrival at its socket (the kernel's stamp); on Linux that clock is
``CLOCK_MONOTONIC``, shared by every process on the machine, so the client's and the server's
stamps compare directly. A request's measurement error is client TTFT − server TTFT (server: the
request's first bytes arrived → first ``content_block_delta`` written): what the client adds by
sending the request (``send``: clock start, just before the first byte went to the socket → its
arrival at the server's) and by receiving the response (``receive``: the server's write → the
arrival, at the client's socket, of the chunk that completed the first delta).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2

from pipeline.apps.bench.record import RequestRecord
from pipeline.apps.bench.stats import peak_overlap

FETCH_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class TruthCheck:
    checked: int
    server_max_concurrent_requests: int | None
    """In flight at once as the server saw them: configured concurrency, verified."""
    lost_deltas: int
    """Content deltas the server wrote to completed streams that the client never measured."""


def first_delta_ns(truth: dict[str, Any]) -> int | None:
    """When the server wrote the first content delta, or None if it never did."""
    for event in truth["events"]:
        if event["type"] == "content_block_delta":
            return int(event["sent_ns"])
    return None


def answered_ns(truth: dict[str, Any]) -> int | None:
    """When the server wrote the last of its answer, the end of its request's time in flight.

    A closed loop's next request can reach the server after that write but before the previous
    handler has finished; counting to ``finished_ns`` would report an overlap that never was.
    """
    events = truth["events"]
    if events:
        return int(events[-1]["sent_ns"])
    ended = truth["headers_ns"] or truth["finished_ns"]
    return None if ended is None else int(ended)


def lost_deltas(record: RequestRecord, truth: dict[str, Any]) -> int:
    """Deltas written minus deltas measured (a first delta and one per gap) for a completed stream."""
    written = sum(1 for event in truth["events"] if event["type"] == "content_block_delta")
    measured = 0 if record.ttft is None else 1 + len(record.chunk_gaps)
    return max(0, written - measured)


def apply_truth(record: RequestRecord, truth: dict[str, Any]) -> None:
    """Server TTFT, and the client's error split where it arises: sending, and receiving."""
    first = first_delta_ns(truth)
    if first is None or record.ttft is None:
        return
    received = int(truth["received_ns"])
    record.server_ttft = (first - received) / 1e9
    record.ttft_error = record.ttft - record.server_ttft
    zero = record.transport_ns or record.sent_ns or record.start_ns
    record.ttft_error_send = (received - zero) / 1e9
    record.ttft_error_receive = record.ttft_error - record.ttft_error_send


async def check_truth(base_url: str, records: Sequence[RequestRecord]) -> TruthCheck:
    """Fetches each request's truth (after the run, so it never disturbs it) and fills the errors."""
    wanted = [r for r in records if r.request_id]
    intervals: list[tuple[int, int]] = []
    limiter = anyio.CapacityLimiter(FETCH_CONCURRENCY)
    checked = lost = 0

    async def fetch(client: httpx2.AsyncClient, record: RequestRecord) -> None:
        nonlocal checked, lost
        async with limiter:
            response = await client.get(f"/_sim/requests/{record.request_id}")
        if response.status_code != 200:
            return
        truth = response.json()
        checked += 1
        if (ended := answered_ns(truth)) is not None:
            intervals.append((truth["received_ns"], ended))
        if record.ok:
            apply_truth(record, truth)
            lost += lost_deltas(record, truth)

    async with httpx2.AsyncClient(base_url=base_url, timeout=30.0) as client:
        async with anyio.create_task_group() as tg:
            for record in wanted:
                tg.start_soon(fetch, client, record)
    return TruthCheck(checked, peak_overlap(intervals) if intervals else None, lost)
