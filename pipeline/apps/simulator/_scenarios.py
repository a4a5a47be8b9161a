"""The scenario registry: one row per scenario, so adding one is adding a row.

A scenario is a *content* (what text the assistant writes, and which extra blocks) plus at most
one *fault* (how the response goes wrong). Faults never apply to continuation requests (a prefill
or a continue turn) unless ``drop_continuations`` is set, so a resuming client always recovers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._text import TextKind

Fault = Literal["drop", "overloaded", "rate_limited", "unavailable"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """What one scenario produces: ``text`` is the kind of prose of the text block."""

    name: str
    text: TextKind = "report"
    thinking: bool = False
    tool_use: bool = False
    fault: Fault | None = None
    doc: str = ""


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("report", doc="long markdown report; max_tokens or its natural end stops it"),
        Scenario("tool_use", text="tool_intro", tool_use=True, doc="short text, then a tool_use block"),
        Scenario("thinking", thinking=True, doc="a thinking block with signature, then the report"),
        Scenario("loop", text="loop", doc="some prose, then one paragraph repeated until max_tokens"),
        Scenario("drop", fault="drop", doc="the report, cut mid-event after N events (TCP close)"),
        Scenario("overloaded", fault="overloaded", doc="the report, then an overloaded_error event"),
        Scenario("rate_limited", fault="rate_limited", doc="HTTP 429 rate_limit_error with retry-after"),
        Scenario("unavailable", fault="unavailable", doc="HTTP 529 overloaded_error before any event"),
        Scenario("markup", text="markup", doc="prose with HTML, <script>, CR, CRLF, U+2028, emoji, BOM"),
    )
}

SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)
"""Every scenario name, in registry order."""

DEFAULT_FAULT_AFTER = 20
"""Complete events sent before a drop or an error event when neither header nor setting says."""
