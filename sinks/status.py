"""A live status line at the bottom of the terminal while a report streams.

The report's text scrolls on stdout while the status (tokens, tokens/s, cost so far, elapsed) stays
on the terminal's last row: the line is kept out of the scroll region (DECSTBM, as apt's progress
bar does), and each redraw is one write that saves the cursor, draws, and restores it, so the two
streams never tear each other's output. Only used when stderr is a terminal.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self, TextIO

import anyio

from pipeline.events import CostUpdate, Item

REDRAW_INTERVAL_NS = 100_000_000
"""At most ten redraws a second: the terminal, not the stream, sets the pace worth showing."""


class StatusLineSink:
    """Shows one stream's progress; a live view, so it is meant to run under ``drop_oldest``."""

    def __init__(self, stream: TextIO, *, name: str = "status") -> None:
        self.name = name
        self._stream = stream
        self._rows = 0
        self._started_ns = time.perf_counter_ns()
        self._first_token_ns: int | None = None
        self._cost: CostUpdate | None = None
        self._outcome: str | None = None
        self._drawn_ns = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        self._rows = shutil.get_terminal_size().lines
        if self._rows > 2:
            self._stream.write(f"\n\0337\033[1;{self._rows - 1}r\0338\033[1A")
            self._stream.flush()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        if self._rows > 2:
            self._stream.write(f"\0337\033[1;{self._rows}r\033[{self._rows};1H\033[2K\0338")
            self._stream.flush()

    async def write(self, batch: Sequence[Item]) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        for item in batch:
            kind = getattr(item.event, "type", None)
            if kind == "rillet.cost":
                self._cost = item.event
            elif kind == "content_block_delta" and self._first_token_ns is None:
                self._first_token_ns = item.received_ns
            elif kind == "rillet.end":
                self._outcome = item.event.outcome
        now = time.perf_counter_ns()
        if now - self._drawn_ns >= REDRAW_INTERVAL_NS or self._outcome is not None:
            self._drawn_ns = now
            self._draw(now)

    def status(self, now_ns: int) -> str:
        """The line's text: what a person watching wants to know at a glance."""
        elapsed = (now_ns - self._started_ns) / 1e9
        tokens = self._cost.usage.output_tokens if self._cost else 0
        streaming = (now_ns - self._first_token_ns) / 1e9 if self._first_token_ns else 0.0
        rate = tokens / streaming if streaming > 0 else 0.0
        cost = f"${self._cost.usd:.4f}{'~' if self._cost.estimated else ''}" if self._cost else "$-"
        state = self._outcome or "streaming"
        return f"rillet: {state} · {tokens:,} tokens · {rate:,.0f} tok/s · {cost} · {elapsed:.1f} s"

    def _draw(self, now_ns: int) -> None:
        if self._rows > 2:
            self._stream.write(f"\0337\033[{self._rows};1H\033[2K{self.status(now_ns)}\0338")
            self._stream.flush()
