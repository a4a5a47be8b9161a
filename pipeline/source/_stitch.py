"""Stitching the HTTP attempts of one logical stream into the one stream sinks see.

The contract with stages and sinks:

- Every attempt's ``message_start`` passes through (its item carries ``attempt = n``), so the
  accumulator keeps the message and sums usage, and the cost meter prices each attempt.
- Block indices are the logical stream's: an attempt's blocks take the indices after those sinks
  already saw, so an index never names two blocks.
- The first text block of a resumed attempt continues the interrupted text. If the interrupted
  block is still open, the continuation's ``content_block_start`` is suppressed and its deltas go
  to the open block's index; if it had stopped, the continuation's text becomes a new block, and
  only if it brings more than the whitespace already sent. Its head is cleaned first: whitespace
  sinks already have, and in ``continue`` mode the restated words (:mod:`pipeline.source._overlap`).
- The interrupted block's ``content_block_stop`` is sent exactly once: at the continuation's
  stop, when another block begins first, at ``message_delta``, or before a restart.
- With resuming on, ``tool_use`` and ``server_tool_use`` blocks are held back until an event
  that is not part of one arrives (``message_delta`` or a text block), then sent at once, items
  stamped with their true receive times. So a partial tool call, whose JSON can be neither resumed
  nor executed, never reaches a sink, and neither does a finished one that a drop before
  ``message_delta`` leaves unconfirmed (it would need its ``tool_result`` before any user turn, so
  no resume could follow it): a resume carries on from the last text and the calls are made anew.
- When an attempt fails, the text its join held back (a continue turn's head) is decided on and
  sent, so that every attempt makes progress even when each one drops.
- A restart (a new generation, which cannot be spliced) closes the interrupted block; the new
  attempt's blocks follow it at fresh indices, after an ``AttemptStarted(strategy="restart")``
  item that tells sinks keeping only the answer to start over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from anthropic.types import RawContentBlockDeltaEvent, RawContentBlockStopEvent, TextDelta

from pipeline._text_buffer import TextBuffer
from pipeline.source._overlap import HOLD_CHARS, drop_repeated, restated_end

Join = Literal["prefill", "continue", "retry"]
"""How a resumed attempt's first text block joins the text so far (``None``: it does not).

``prefill`` drops the whitespace the request stripped, ``continue`` also the restated words, and
``retry`` (the original request again, after at most one word was sent) what the fresh answer
repeats of the text sent."""

_HELD = frozenset({"tool_use", "server_tool_use"})


class Transcript:
    """What sinks have been sent of the logical stream: what a resume is planned from."""

    __slots__ = ("open", "stop_reason", "stopped", "texts", "types")

    def __init__(self) -> None:
        self.types: list[str] = []
        """Each logical block's type, by index."""
        self.texts: dict[int, TextBuffer] = {}
        """The text sent for each text block."""
        self.open: int | None = None
        self.stop_reason: str | None = None
        self.stopped = False

    def add(self, kind: str) -> int:
        """Opens the next logical block."""
        index = len(self.types)
        self.types.append(kind)
        self.open = index
        if kind == "text":
            self.texts[index] = TextBuffer()
        return index

    def text_blocks(self) -> list[str]:
        """The text of every text block, in order."""
        return [text.value() for text in self.texts.values()]


class Stitcher:
    """Maps each attempt's events onto the logical stream; see the module docstring for the rules."""

    def __init__(self, *, hold_tools: bool) -> None:
        self.transcript = Transcript()
        self._hold_tools = hold_tools
        self._map: dict[int, int] = {}
        self._held: list[Any] = []
        """Events of the tool blocks since the last text, sent once a non-tool event follows them."""
        self._holding: set[int] = set()
        self._join_mode: Join | None = None
        self._join: _Join | None = None

    def begin(self, join: Join | None) -> list[Any]:
        """A new attempt starts; returns the events to send first (the interrupted block's stop)."""
        self._map, self._held, self._holding, self._join, self._join_mode = {}, [], set(), None, join
        return [self.close()] if join is None and self.transcript.open is not None else []

    def feed(self, event: Any) -> Sequence[Any]:
        """The events to send for one event of the current attempt."""
        kind = event.type
        if self._held:
            if kind == "content_block_start" and event.content_block.type in _HELD:
                self._holding.add(event.index)
            if getattr(event, "index", None) in self._holding:
                self._held.append(event)
                return ()
            return [*self._release(), *self.feed(event)]
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._start(event)
        if kind == "content_block_stop":
            return self._stop(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            self.transcript.stopped = True
        return (event,)

    def salvage(self) -> Sequence[Any]:
        """The attempt failed: what it held back of its text goes out now, so each attempt makes progress."""
        join = self._join
        return join.flush() if join is not None else ()

    def close(self) -> Any:
        """A ``content_block_stop`` for the open block, which no attempt will finish."""
        index = self.transcript.open
        assert index is not None
        self.transcript.open = None
        return RawContentBlockStopEvent(type="content_block_stop", index=index)

    def open(self, event: Any) -> Any:
        """Opens a logical block for the attempt's block that ``event`` starts."""
        logical = self.transcript.add(event.content_block.type)
        self._map[event.index] = logical
        return _at(event, logical)

    def _delta(self, event: Any) -> Sequence[Any]:
        index = event.index
        join = self._join
        if join is not None and join.index == index:
            return join.delta(event)
        logical = self._map.get(index, index)
        delta = event.delta
        if delta.type == "text_delta":
            text = self.transcript.texts.get(logical)
            if text is not None:
                text.append(delta.text)
        return (_at(event, logical),)

    def _start(self, event: Any) -> Sequence[Any]:
        kind = event.content_block.type
        if kind == "text" and self._join_mode is not None:
            self._join = _Join(self, event, self._join_mode)
            self._join_mode = None
            return ()
        out = [self.close()] if self.transcript.open is not None else []
        if self._hold_tools and kind in _HELD:
            self._held.append(event)
            self._holding.add(event.index)
        else:
            out.append(self.open(event))
        return out

    def _release(self) -> list[Any]:
        """Sends the held tool blocks: a non-tool event came, so the turn has got past them."""
        held, self._held, self._holding = self._held, [], set()
        out: list[Any] = []
        for event in held:
            if event.type == "content_block_start":
                out.append(self.open(event))
            else:
                out.extend(self._stop(event) if event.type == "content_block_stop" else self._delta(event))
        return out

    def _stop(self, event: Any) -> Sequence[Any]:
        index = event.index
        join = self._join
        if join is not None and join.index == index:
            self._join = None
            return join.stop()
        logical = self._map.get(index, index)
        if self.transcript.open == logical:
            self.transcript.open = None
        return (_at(event, logical),)

    def _message_delta(self, event: Any) -> Sequence[Any]:
        out: list[Any] = []
        if self._join is not None:
            out += self._join.stop()
            self._join = None
        if self.transcript.open is not None:
            out.append(self.close())
        if event.delta.stop_reason is not None:
            self.transcript.stop_reason = event.delta.stop_reason
        out.append(event)
        return out


class _Join:
    """The first text block of a resumed attempt, joined to the text sinks already have."""

    __slots__ = ("head", "held", "index", "repeated", "sent", "start", "stitcher", "target")

    def __init__(self, stitcher: Stitcher, start: Any, mode: Join) -> None:
        transcript = stitcher.transcript
        text = "".join(transcript.text_blocks())
        self.stitcher = stitcher
        self.index: int = start.index
        self.start = start
        self.repeated = text if mode == "retry" else text[len(text.rstrip()) :]
        """Sent text the answer may begin with again: the whitespace the request stripped, or all."""
        self.target: int | None = transcript.open
        """The logical block the text goes to: the interrupted one if open, else one made on demand."""
        self.sent = text if mode == "continue" else ""
        self.head: list[str] | None = [] if mode == "continue" else None
        """A continue turn's first chars, held back until the restated part is found."""
        self.held = 0

    def delta(self, event: Any) -> Sequence[Any]:
        delta = event.delta
        if delta.type != "text_delta":
            return [*self._started(), _at(event, self._target())]
        text: str = delta.text
        if self.head is not None:
            self.head.append(text)
            self.held += len(text)
            if self.held < HOLD_CHARS:
                return ()
            text = self._cut()
        return self._text(text, event)

    def flush(self) -> Sequence[Any]:
        """The attempt sends no more text: decides the cut on what is held and sends the rest."""
        return self._text(self._cut(final=True), None) if self.head is not None else ()

    def stop(self) -> Sequence[Any]:
        out = list(self.flush())
        transcript = self.stitcher.transcript
        if self.target is not None and transcript.open == self.target:
            out.append(self.stitcher.close())
        return out

    def _cut(self, *, final: bool = False) -> str:
        head = "".join(self.head or ())
        self.head = None
        return head[restated_end(self.sent, head, final=final) :]

    def _text(self, text: str, event: Any) -> Sequence[Any]:
        if self.repeated:
            self.repeated, text = drop_repeated(self.repeated, text)
        if not text:
            return ()
        out = self._started()
        target = self._target()
        self.stitcher.transcript.texts[target].append(text)
        if event is not None and event.index == target and event.delta.text == text:
            out.append(event)
        else:
            delta = TextDelta(type="text_delta", text=text)
            out.append(RawContentBlockDeltaEvent(type="content_block_delta", index=target, delta=delta))
        return out

    def _started(self) -> list[Any]:
        if self.target is not None:
            return []
        stitcher = self.stitcher
        out = [stitcher.close()] if stitcher.transcript.open is not None else []
        out.append(stitcher.open(self.start))
        self.target = stitcher.transcript.open
        return out

    def _target(self) -> int:
        assert self.target is not None
        return self.target


def _at(event: Any, index: int) -> Any:
    """``event`` at logical ``index``: itself when the indices agree, else a copy."""
    return event if event.index == index else event.model_copy(update={"index": index})
