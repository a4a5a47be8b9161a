"""The stdout sink: the answer's text as it arrives, and with ``verbose`` what happens, on stderr.

stdout carries the answer alone, so ``rillet run > answer.md`` keeps just that: no thinking (the
model's reasoning is not the answer; ``verbose`` notes when it starts), no metadata, and a final
newline if the text lacks one. One stream is shown: the first whose text arrives; another stream's
text would interleave word by word, so it is left to the other sinks and one notice on stderr says so.

Writes are plain blocking calls on the event loop: they are small, and a thread hop would cost more
than the write. Each batch is written and flushed as a few runs (one per switch between stdout and
stderr), never an item at a time. A reader that went away (``rillet run | head``) raises a
:class:`SinkError` chained to the ``BrokenPipeError``, so the fan-out's ``on_error`` applies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TextIO

import anyio

from pipeline.errors import SinkError
from pipeline.events import (
    AbortRequested,
    AttemptStarted,
    CostUpdate,
    FirstToken,
    Item,
    LatencySummary,
    RepetitionDetected,
    ResponseHeaders,
    StreamEnded,
    ToolInputError,
    report_text,
)

COST_INTERVAL_NS = 1_000_000_000
"""At most one estimated cost line per stream per second of stream time; the final one always shows."""


def _attempt(event: AttemptStarted) -> str:
    reason = f": {event.reason}" if event.reason else ""
    return f"attempt {event.attempt} ({event.strategy}){reason}"


def _headers(event: ResponseHeaders) -> str:
    return f"HTTP {event.status_code}, request id {event.request_id or 'none'}"


def _first(event: FirstToken) -> str:
    return f"first {event.kind} after {event.seconds:.3f} s"


def _repetition(event: RepetitionDetected) -> str:
    return f"repetition: a {event.period}-character passage {event.repeats} times ({event.action})"


def _cost(event: CostUpdate) -> str:
    usage = event.usage
    estimate = " (estimated)" if event.estimated else ""
    return f"cost ${event.usd:.4f}{estimate}: {usage.input_tokens} in, {usage.output_tokens} out tokens"


def _tool_input(event: ToolInputError) -> str:
    return f"tool input of block {event.index} is not valid JSON: {event.message}"


def _abort(event: AbortRequested) -> str:
    return f"abort requested ({event.outcome}): {event.reason}"


def _latency(event: LatencySummary) -> str:
    first = "n/a" if event.to_first_text is None else f"{event.to_first_text:.3f} s"
    return f"first text {first}, end to end {event.end_to_end:.3f} s, {event.output_tokens} output tokens"


def _end(event: StreamEnded) -> str:
    stop = f" (stop_reason {event.stop_reason})" if event.stop_reason else ""
    error = f": {event.error}" if event.error else ""
    return f"ended: {event.outcome}{stop}{error}"


_DESCRIBE: dict[type[Any], Callable[[Any], str]] = {
    AttemptStarted: _attempt,
    ResponseHeaders: _headers,
    FirstToken: _first,
    RepetitionDetected: _repetition,
    CostUpdate: _cost,
    ToolInputError: _tool_input,
    AbortRequested: _abort,
    LatencySummary: _latency,
    StreamEnded: _end,
}
"""The rillet events ``verbose`` reports, one line each; SDK events and bulky ones are not."""


class StdoutSink:
    """Prints the first stream's text to ``stream`` and, if ``verbose``, one line per event to ``err``.

    ``stream`` and ``err`` default to ``sys.stdout`` and ``sys.stderr`` as they are when the sink is
    made, so redirection and capture set up before then apply. Neither is closed: they are not ours.
    """

    linger = 0.02
    """Seconds to gather a batch: a terminal redrawn 50 times a second looks live, and flushes are few."""

    def __init__(
        self,
        *,
        verbose: bool = False,
        stream: TextIO | None = None,
        err: TextIO | None = None,
        name: str = "stdout",
    ) -> None:
        self.name = name
        self._verbose = verbose
        self._out = sys.stdout if stream is None else stream
        self._err = sys.stderr if err is None else err
        self._state = "new"
        self._shown: str | None = None
        self._hidden_noted = False
        self._at_line_start = True
        self._last_cost_ns: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise anyio.ClosedResourceError
        self._state = "open"
        return self

    async def write(self, batch: Sequence[Item]) -> None:
        """Prints the batch in order, as one write and flush per run of stdout or stderr output."""
        if self._state == "broken":
            raise anyio.BrokenResourceError
        if self._state != "open":
            raise anyio.ClosedResourceError
        runs: list[tuple[TextIO, list[str]]] = []
        for item in batch:
            text = report_text(item)
            if text:
                self._text(item.stream_id, text, runs)
            elif isinstance(item.event, StreamEnded) and item.stream_id == self._shown:
                if not self._at_line_start:
                    self._text(item.stream_id, "\n", runs)
            if self._verbose:
                line = self._describe(item)
                if line is not None:
                    _append(runs, self._err, f"[{item.stream_id}] {line}\n")
        for target, parts in runs:
            self._emit(target, "".join(parts))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Flushes both streams unless one already failed; leaves them open."""
        if self._state == "closed":
            return
        try:
            if self._state != "broken":
                self._emit(self._out, "")
                self._emit(self._err, "")
        except SinkError:
            if exc_type is None:
                raise
        finally:
            self._state = "closed"

    def _text(self, stream_id: str, text: str, runs: list[tuple[TextIO, list[str]]]) -> None:
        if self._shown is None:
            self._shown = stream_id
        if stream_id == self._shown:
            _append(runs, self._out, text)
            self._at_line_start = text.endswith("\n")
        elif not self._hidden_noted:
            self._hidden_noted = True
            shown = f"rillet: stdout shows stream {self._shown!r} only; "
            _append(runs, self._err, f"{shown}{stream_id!r} and any others are not printed\n")

    def _describe(self, item: Item) -> str | None:
        describe = _DESCRIBE.get(type(item.event))
        if describe is None:
            return None
        if isinstance(item.event, CostUpdate) and item.event.estimated:
            last = self._last_cost_ns.get(item.stream_id)
            if last is not None and item.received_ns - last < COST_INTERVAL_NS:
                return None
            self._last_cost_ns[item.stream_id] = item.received_ns
        return describe(item.event)

    def _emit(self, target: TextIO, text: str) -> None:
        try:
            if text:
                target.write(text)
            target.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed under us
            self._state = "broken"
            which = "stdout" if target is self._out else "stderr"
            if isinstance(exc, BrokenPipeError):
                raise SinkError(self.name, f"the reader of {which} went away (broken pipe)") from exc
            raise SinkError(self.name, f"cannot write to {which}: {exc}") from exc


def _append(runs: list[tuple[TextIO, list[str]]], target: TextIO, text: str) -> None:
    """Adds text to the last run if it goes to the same stream, else starts a run."""
    if runs and runs[-1][0] is target:
        runs[-1][1].append(text)
    else:
        runs.append((target, [text]))
