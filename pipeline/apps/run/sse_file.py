"""Recorded SSE bodies of the Messages API, read back into the SDK's own event objects.

``rillet replay`` and the tests must see exactly what a live stream gives the pipeline, so this
reader treats each event as the SDK's stream iterator (``anthropic._streaming.Stream``) does:
``ping`` is skipped, an event without an ``event:`` name or without data is skipped, an ``error``
event ends the stream with an error, and every other event is built by the SDK's own
``construct_type``, so unknown future event types come through with a readable ``.type``.

Lines split on CRLF, LF or CR, as the WHATWG spec says. Two deliberate departures, both for files:
an event left pending at the end of the file is dispatched (recordings are often saved without a
final blank line), and a line that is neither ``field: value``, a known field name alone, nor a
``:comment`` is an error rather than ignored, since in a recording it means corruption.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple, cast

from anthropic._models import construct_type
from anthropic.types import RawMessageStreamEvent

from pipeline.apps.run.event_shapes import shape_problem
from pipeline.errors import InputError, SourceError

CHUNK_SIZE = 1 << 16
"""Bytes read at a time, so a long recording or a pipe on stdin streams rather than loads."""

MAX_LINE_BYTES = 16 << 20
"""The longest line a recording may hold by default: far above any real event (a whole 128k-token
message is under 1 MiB of JSON), low enough that a corrupt file without line breaks fails fast."""

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_KNOWN_FIELDS = frozenset({"event", "data", "id", "retry"})
_SKIPPED_EVENTS = frozenset({"ping"})


class RecordedEvent(NamedTuple):
    """One event of a recording and the line its data starts on (1-based), for messages."""

    line: int
    event: RawMessageStreamEvent


def read_sse_events(
    path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[RecordedEvent]:
    """The events of a recorded SSE file; raises :class:`InputError` naming the file and line."""
    name = os.fspath(path)
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read the recorded stream {name!r}: {exc.strerror}.") from exc
    with file:
        chunks = iter(lambda: file.read(CHUNK_SIZE), b"")
        yield from parse_sse_events(chunks, name=name, max_line_bytes=max_line_bytes)


def parse_sse_events(
    source: str | bytes | Iterable[str] | Iterable[bytes],
    *,
    name: str = "<stream>",
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[RecordedEvent]:
    """The events of an SSE body given whole or in chunks (a text or binary file, stdin, a list).

    Every complete event before a malformed line is yielded first, so a caller can process and
    flush them before the :class:`InputError` (or, for an ``error`` event, :class:`SourceError`).
    """
    chunks: Iterable[str | bytes] = (source,) if isinstance(source, str | bytes) else source
    event: str | None = None
    data: list[str] = []
    first = 0  # the line of the event's data, or of its first field while it has no data
    for number, line in enumerate(_decoded_lines(chunks, name, max_line_bytes), start=1):
        if not line:
            recorded = _dispatch(event, data, first, name)
            if recorded is not None:
                yield recorded
            event, data, first = None, [], 0
        elif not line.startswith(":"):
            field, value = _field(line, number, name)
            if field == "event":
                event = value
            elif field == "data":
                first = first if data else number
                data.append(value)
            first = first or number
    recorded = _dispatch(event, data, first, name)
    if recorded is not None:
        yield recorded


def _field(line: str, number: int, name: str) -> tuple[str, str]:
    """A line's field name and value, the single space after the colon removed."""
    field, colon, value = line.partition(":")
    if (colon and _FIELD_NAME.fullmatch(field)) or field in _KNOWN_FIELDS:
        return field, value[1:] if value.startswith(" ") else value
    raise InputError(
        f"{name}:{number}: expected 'field: value' or ':comment', got {_excerpt(line)!r}; "
        "is this an SSE recording?"
    )


def _dispatch(event: str | None, data: list[str], line: int, name: str) -> RecordedEvent | None:
    """The SDK's view of one complete SSE event: skipped, raised as an error, or built."""
    if event is None or event in _SKIPPED_EVENTS:
        return None
    text = "\n".join(data)
    if event == "error":
        raise _stream_error(text, line, name)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{name}:{line}: the data of event {event!r} is not JSON ({exc}).") from exc
    except RecursionError:
        raise InputError(f"{name}:{line}: the data of event {event!r} is nested too deeply.") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InputError(f"{name}:{line}: the data of event {event!r} is not an object with a 'type' string.")
    problem = shape_problem(value)
    if problem is not None:
        raise InputError(f"{name}:{line}: event {value['type']!r}: {problem}.")
    try:
        event_object = construct_type(type_=RawMessageStreamEvent, value=value)
    except RecursionError:
        raise InputError(f"{name}:{line}: the data of event {event!r} is nested too deeply.") from None
    return RecordedEvent(line, cast(RawMessageStreamEvent, event_object))


def _stream_error(text: str, line: int, name: str) -> SourceError:
    """An ``error`` event as the live source reports a mid-stream API error."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error_type = str(error.get("type") or "api_error")
        return SourceError(f"{error_type}: {error.get('message', '')} ({name}:{line})", error_type)
    return SourceError(f"api_error: {_excerpt(text)} ({name}:{line})", "api_error")


def _decoded_lines(chunks: Iterable[str | bytes], name: str, max_line_bytes: int) -> Iterator[str]:
    """Lines without their ends, split on CRLF, LF or CR only, across chunk boundaries.

    Splitting bytes before decoding keeps U+2028 and friends inside JSON strings, as the SDK does.
    """
    for number, raw in enumerate(_raw_lines(chunks, name, max_line_bytes), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}:{number}: not UTF-8 ({exc.reason} at byte {exc.start}).") from exc
        yield line.removeprefix("\ufeff") if number == 1 else line


def _raw_lines(chunks: Iterable[str | bytes], name: str, max_line_bytes: int) -> Iterator[bytes]:
    """Each chunk is split once and a long line grows in place, so reading stays linear in the input
    however long its lines are; past ``max_line_bytes`` the line is refused, before memory runs out.
    """
    pending = bytearray()
    number = 0
    for chunk in chunks:
        data = chunk.encode() if isinstance(chunk, str) else chunk
        if not data:
            continue
        if pending.endswith(b"\r"):  # a line ended by CR, held back in case its LF starts this chunk
            number += 1
            if len(pending) - 1 > max_line_bytes:
                raise _too_long(name, number, max_line_bytes)
            yield bytes(pending[:-1])
            pending.clear()
            data = data[1:] if data.startswith(b"\n") else data
        pieces = data.splitlines(keepends=True)
        last = len(pieces) - 1
        for position, piece in enumerate(pieces):
            complete = piece.endswith(b"\n") or (piece.endswith(b"\r") and position < last)
            if complete and not pending:  # the common case: a whole line within one chunk, no copy
                line = piece.rstrip(b"\r\n")
            else:
                pending += piece
                if not complete:
                    if len(pending) > max_line_bytes + 1:  # one byte more may be the CR of its end
                        raise _too_long(name, number + 1, max_line_bytes)
                    continue
                line = bytes(pending.rstrip(b"\r\n"))
                pending.clear()
            number += 1
            if len(line) > max_line_bytes:
                raise _too_long(name, number, max_line_bytes)
            yield line
    if pending:
        line = bytes(pending.rstrip(b"\r\n"))
        if len(line) > max_line_bytes:
            raise _too_long(name, number + 1, max_line_bytes)
        yield line


def _too_long(name: str, number: int, max_line_bytes: int) -> InputError:
    return InputError(
        f"{name}:{number}: line longer than {max_line_bytes} bytes (raise the limit with --max-line-bytes)."
    )


def _excerpt(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
