"""An event-stream parser that follows WHATWG HTML §9.2.6 to the letter, fed in arbitrary chunks.

httpx-sse and similar libraries yield events a browser drops (no ``data:``), so tests that stand
for a browser use this one: UTF-8 with a leading BOM dropped, lines ending in CRLF, LF or a lone
CR (also when a CR ends one chunk and its LF starts the next), comments ignored, ``id`` with a NUL
ignored, an event dispatched only when its data buffer is not empty, and one left unterminated at
the end of the stream discarded.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """A dispatched event as a page's listener sees it, with the last event id at that moment."""

    type: str
    data: str
    last_event_id: str


class SseParser:
    """Feed bytes with :meth:`feed`; it returns the events completed so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._started = False
        self._data: list[str] = []
        self._type = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        text = self._text + text
        events: list[Event] = []
        position = 0
        while (cut := _line_end(text, position)) is not None:
            event = self._line(text[position : cut[0]])
            position = cut[1]
            if event is not None:
                events.append(event)
        self._text = text[position:]
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id_buffer
        if not self._data:
            self._type = ""
            return None
        event = Event(self._type or "message", "\n".join(self._data), self.last_event_id)
        self._data, self._type = [], ""
        return event


_BREAK = re.compile(r"[\r\n]")


def _line_end(text: str, start: int) -> tuple[int, int] | None:
    """Where the line at ``start`` ends and the next begins; None if incomplete (a final CR awaits its LF)."""
    found = _BREAK.search(text, start)
    if found is None:
        return None
    index = found.start()
    if text[index] == "\n":
        return index, index + 1
    if index + 1 == len(text):
        return None
    return index, index + (2 if text[index + 1] == "\n" else 1)


def parse(body: bytes) -> list[Event]:
    """Every event of a complete body."""
    return SseParser().feed(body)
