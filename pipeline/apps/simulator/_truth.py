"""Ground truth per request: what was sent and when, for checking a client's measurements.

Send times are ``time.perf_counter_ns()`` taken just before the bytes go to the transport. They
are stored compactly (an ``array`` of ints and a list of interned type names) because a long
report has thousands of events; the store keeps only the last ``limit`` requests.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ServedRequest:
    request_id: str
    received_ns: int
    scenario: str = ""
    model: str = ""
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    mode: str = "fresh"
    prefix_matched: bool | None = None
    overlap_text: str = ""
    fault: str | None = None
    stop_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    headers_ns: int | None = None
    finished_ns: int | None = None
    disconnected: bool = False
    dropped: bool = False
    completed: bool = False
    partial_event: str | None = None
    types: list[str] = field(default_factory=list)
    times: array[int] = field(default_factory=lambda: array("q"))

    def sent(self, event_type: str, ns: int) -> None:
        self.types.append(event_type)
        self.times.append(ns)

    def to_json(self) -> dict[str, Any]:
        """The truth as served by ``GET /_sim/requests/{id}`` and ``Simulator.truth``."""
        return {
            "request_id": self.request_id,
            "scenario": self.scenario,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "error_type": self.error_type,
            "mode": self.mode,
            "prefix_matched": self.prefix_matched,
            "overlap_text": self.overlap_text,
            "fault": self.fault,
            "stop_reason": self.stop_reason,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            "received_ns": self.received_ns,
            "headers_ns": self.headers_ns,
            "finished_ns": self.finished_ns,
            "events": [{"type": t, "sent_ns": ns} for t, ns in zip(self.types, self.times, strict=True)],
            "partial_event": self.partial_event,
            "disconnected": self.disconnected,
            "dropped": self.dropped,
            "completed": self.completed,
        }


class TruthStore:
    """The last ``limit`` request records, oldest first."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._records: OrderedDict[str, ServedRequest] = OrderedDict()

    def add(self, record: ServedRequest) -> None:
        self._records[record.request_id] = record
        while len(self._records) > self.limit:
            self._records.popitem(last=False)

    def get(self, request_id: str) -> ServedRequest:
        return self._records[request_id]

    def ids(self) -> list[str]:
        return list(self._records)
