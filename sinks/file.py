"""The file sink: a stream's report text, or every event as JSON lines, in a file that is whole or says so.

Each file is written under a temporary name beside its final one (``report.md.part``) and renamed
over the final name (``os.replace``, after an fsync) once it is finished, so a whole file appears
atomically and a previous run's file is never left to pass for this run's. Each batch is flushed
to the operating system as it is written, so a process killed outright (``kill -9``, the OOM
killer) leaves in the ``.part`` file everything received up to one linger window before it died.
A file whose stream did not complete is still renamed, with a marker appended first, so that what
was received is kept and never mistaken for a whole answer:

- text: a line ``<!-- rillet: incomplete -->`` (for tools) and a visible ``> **Incomplete report:**
  <reason>, after N characters.`` (for readers of the rendered markdown). A text stream that
  completed with ``stop_reason`` ``max_tokens`` is marked too: the model was cut off.
- jsonl: a last line ``{"type": "rillet.incomplete", "reason": ..., "streams": {id: outcome or null},
  "lines": N}``.

A file is finished when its stream ends (a path with ``{stream_id}`` holds one stream per file, and
a text file always holds one stream), or when the sink closes (a shared JSON-lines log, which any
number of streams may append to). Whole means: every stream in it ended ``completed`` and, for a
file finished at close, the sink closed without an exception. If even the marker cannot be written
(the destination failed), the partial file keeps its ``.part`` name, which says the same.

A path that is a symbolic link names its target: the target gets the ``.part`` file and the rename,
and the link stays a link. A path that is not a regular file (a FIFO, a device such as
``/dev/null``, ``/dev/stdout`` on a pipe) is written directly, without a ``.part`` file: renaming a
file over it would replace the device or pipe with a plain file.

Without ``{stream_id}``, a second stream refuses to share a text file (:class:`SinkError`): its text
interleaved with the first's would be garbage, and dropping it silently would lose it.

Each batch costs one thread hop per file it touches (a write and its flush; a hop costs about
100 µs, docs/architecture.md), so a batch's text is built in memory first.

File operations run shielded from cancellation: nothing can stop a thread once it started, so a
cancelled await would leave the write running behind the sink's back, racing the close. A
cancellation (Ctrl-C, the fan-out's flush deadline) takes effect at the next checkpoint after the
operation, and one that reaches the close still finds the file finished and marked. A hung disk
holds the sink, as it would hold the thread anyway.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TextIO
from urllib.parse import quote

import aiofiles.os
import anyio
import pydantic

from pipeline.errors import ConfigError, SinkError
from pipeline.events import AttemptStarted, Item, StreamEnded, event_type, report_text
from pipeline.fast_events import BlockDelta

Mode = Literal["text", "jsonl"]

PART_SUFFIX = ".part"
"""Appended to the final name while a file is being written."""

PLACEHOLDER = "{stream_id}"
"""In a path, stands for the stream id (percent-encoded where it is not a safe file name)."""

TRUNCATED_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})
"""Stop reasons of a completed stream whose text was nonetheless cut off."""

_MARKER = "\n\n<!-- rillet: incomplete -->\n> **Incomplete report:** {reason}, after {size:,} characters.\n"


@dataclass(frozen=True, slots=True)
class FileSinkStatistics:
    """What the sink has done so far: files finished whole or marked, and batch writes made."""

    open_files: int
    whole_files: int
    incomplete_files: int
    write_calls: int


def json_line(item: Item) -> str:
    """An item as one JSON line: the envelope's fields and the event as the wire (or rillet) gave it."""
    return (
        f'{{"stream_id":{_dumps(item.stream_id)},"seq":{item.seq},"received_ns":{item.received_ns},'
        f'"attempt":{item.attempt},"type":{_dumps(event_type(item))},"event":{_event_json(item.event)}}}\n'
    )


def _event_json(event: object) -> str:
    """A delta keeps the JSON the server sent, as it sent it; SDK models keep exactly the fields the
    server sent, unknown ones included (``exclude_unset``).

    pydantic's fast path refuses a lone surrogate (a JSON ``\\ud83d`` escape decodes to one); the slow
    path keeps it, and the file's ``backslashreplace`` writes it back as the same escape.
    """
    if isinstance(event, BlockDelta):
        return event.raw.decode()
    if isinstance(event, pydantic.BaseModel):
        try:
            return event.model_dump_json(exclude_unset=True, by_alias=True, warnings=False)
        except ValueError:
            pass
    return _dumps(event)


def _jsonable(value: object) -> object:
    """Whatever an unknown or rillet event holds, in a JSON-able form: an events log never refuses one."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True, warnings=False)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "__dict__"):
        return vars(value)
    return repr(value)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable).encode
"""Compact JSON; one encoder built once, since ``json.dumps`` with options builds one per call."""


def _file_name(stream_id: str) -> str:
    """A stream id as one safe path component: percent-encoded, so distinct ids stay distinct."""
    name = quote(stream_id, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def _stream_reason(ended: StreamEnded, mode: Mode) -> str | None:
    """Why a stream that ended leaves its file incomplete, or None if it does not."""
    if ended.outcome == "completed":
        if mode == "text" and ended.stop_reason in TRUNCATED_STOP_REASONS:
            return f"the model was cut off (stop_reason {ended.stop_reason!r})"
        return None
    detail = f": {' '.join(ended.error.split())[:200]}" if ended.error else ""
    return f"the stream ended with outcome {ended.outcome!r}{detail}"


def _closing_reason(exc_type: type[BaseException]) -> str:
    if issubclass(exc_type, anyio.get_cancelled_exc_class()):
        return "the run was cancelled before the stream ended"
    return f"the run failed ({exc_type.__name__}) before the stream ended"


def _restarts(item: Item) -> bool:
    """A text report starts over when the source restarts the generation (not on a resume)."""
    return isinstance(item.event, AttemptStarted) and item.event.strategy == "restart"


_in_thread = aiofiles.os.wrap
"""A blocking call in the event loop's executor (aiofiles's way: a thread hop of about 100 µs)."""


def _write_through(handle: TextIO, text: str, restart: bool) -> None:
    """A batch's text, handed to the operating system (one hop): a ``kill -9`` must not lose it.

    ``restart`` first empties the file (the stream started over).
    """
    if restart:
        handle.seek(0)
        handle.truncate()
    handle.write(text)
    handle.flush()


def _open_destination(path: Path) -> tuple[Path, TextIO, bool]:
    """Opens what ``path`` names for writing, in one hop: its final path, the handle, and whether it
    is written in place (not a regular file, so never replaced by a rename).

    A symbolic link names its target, which gets the ``.part`` file and the rename.
    """
    try:
        direct = not stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        direct = False
    if not direct:
        path = Path(os.path.realpath(path))
    target = path if direct else path.with_name(path.name + PART_SUFFIX)
    handle = open(target, "w", encoding="utf-8", errors="backslashreplace", newline="")
    return path, handle, direct


class _File:
    """One output file: its handle, the streams it holds, how they ended, what waits to be written."""

    def __init__(self, path: Path, handle: TextIO, *, direct: bool) -> None:
        self.path = path
        self.direct = direct
        """Written in place (not a regular file): no ``.part``, no fsync, no rename."""
        self.part = path if direct else path.with_name(path.name + PART_SUFFIX)
        self.handle = handle
        self.ended: dict[str, StreamEnded | None] = {}
        self.pending: list[str] = []
        self.size = 0
        """Characters (text) or lines (jsonl) received so far, for the marker."""
        self.restarted = False
        """The stream started over (resume mode ``restart``): the text so far is void."""
        self.finished = False


class FileSink:
    """Writes the report text (``mode="text"``) or every event (``mode="jsonl"``) to ``path``.

    ``path`` may contain ``{stream_id}`` in its file name to write one file per stream. The module
    docstring says when a file is whole and how an incomplete one is marked.
    """

    linger = 0.05
    """Seconds to gather a batch: one thread hop costs about 100 µs, the report can wait 50 ms."""

    def __init__(self, path: str | os.PathLike[str], *, mode: Mode = "text", name: str = "file") -> None:
        if mode not in ("text", "jsonl"):
            raise ConfigError(f"file sink mode must be 'text' or 'jsonl', got {mode!r}")
        self.name = name
        self._path = os.fspath(path)
        self._mode: Mode = mode
        self._per_stream = PLACEHOLDER in self._path
        if PLACEHOLDER in os.path.dirname(self._path):
            raise ConfigError(f"put {PLACEHOLDER} in the file name of {self._path!r}, not in a folder")
        self._encode: Callable[[Item], str] = report_text if mode == "text" else json_line
        self._shared: _File | None = None
        self._files: dict[str, _File] = {}
        self._ended: set[str] = set()
        self._state: Literal["new", "open", "closed"] = "new"
        self._whole = self._incomplete = self._write_calls = 0

    def statistics(self) -> FileSinkStatistics:
        """Counts so far; ``write_calls`` is the number of batch writes, one per file per batch."""
        return FileSinkStatistics(len(self._unfinished()), self._whole, self._incomplete, self._write_calls)

    async def __aenter__(self) -> Self:
        """Opens the file now when there is one, so a bad path fails before any request is paid for."""
        if self._state != "new":
            raise anyio.ClosedResourceError
        if self._per_stream:
            folder = os.path.dirname(self._path) or "."
            if not await aiofiles.os.path.isdir(folder):
                raise SinkError(self.name, f"the folder {folder!r} does not exist; create it first")
        else:
            self._shared = await self._open(Path(self._path))
        self._state = "open"
        return self

    async def write(self, batch: Sequence[Item]) -> None:
        """Appends the batch: one write per file touched; files whose stream ended are finished."""
        if self._state != "open":
            raise anyio.ClosedResourceError
        touched: dict[_File, None] = {}
        ending: list[_File] = []
        try:
            for item in batch:
                file = self._files.get(item.stream_id)
                if file is None or item.stream_id in self._ended:
                    file = await self._file_for(item.stream_id)
                if self._mode == "text" and _restarts(item):
                    file.pending.clear()
                    file.size, file.restarted = 0, True
                    touched[file] = None
                piece = self._encode(item)
                if piece:
                    file.pending.append(piece)
                    file.size += len(piece) if self._mode == "text" else 1
                    touched[file] = None
                if isinstance(item.event, StreamEnded):
                    file.ended[item.stream_id] = item.event
                    self._ended.add(item.stream_id)
                    if self._per_stream or self._mode == "text":
                        ending.append(file)
        except Exception:
            for file in touched:  # keep what arrived before the refusal
                await self._flush(file)
            raise
        for file in touched:
            if file not in ending:
                await self._flush(file)
        for file in ending:
            await self._finish(file, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Finishes every open file (marked if incomplete) and releases it, even when cancelled."""
        if self._state == "closed":
            return
        self._state = "closed"
        closing = None if exc_type is None else _closing_reason(exc_type)
        files = self._unfinished()
        failure: SinkError | None = None
        try:
            for file in files:
                try:
                    await self._finish(file, closing)
                except SinkError as error:
                    failure = failure or error
        finally:
            for file in files:
                await _release(file)
        if failure is not None and exc_type is None:
            raise failure

    def _unfinished(self) -> list[_File]:
        files = {id(file): file for file in self._files.values()}
        if self._shared is not None and not self._shared.finished:
            files[id(self._shared)] = self._shared
        return list(files.values())

    async def _open(self, path: Path) -> _File:
        try:
            with anyio.CancelScope(shield=True):
                path, handle, direct = await _in_thread(_open_destination)(path)
        except OSError as exc:
            raise self._failed("open", Path(exc.filename or path), exc) from exc
        return _File(path, handle, direct=direct)

    async def _file_for(self, stream_id: str) -> _File:
        """The file a new stream goes to, opened if it needs its own."""
        if stream_id in self._ended:
            raise SinkError(self.name, f"an item of stream {stream_id!r} arrived after its StreamEnded")
        if self._per_stream:
            file = await self._open(Path(self._path.replace(PLACEHOLDER, _file_name(stream_id))))
        else:
            assert self._shared is not None
            file = self._shared
            if self._mode == "text" and file.ended:
                first = next(iter(file.ended))
                raise SinkError(
                    self.name,
                    f"stream {stream_id!r} cannot share the text file {self._path!r} with stream {first!r}; "
                    f"put {PLACEHOLDER} in the path to write one file per stream",
                )
        file.ended[stream_id] = None
        self._files[stream_id] = file
        return file

    async def _flush(self, file: _File) -> None:
        """The one write of a batch for this file; a FIFO or device cannot take back a restart's text."""
        text = "".join(file.pending)
        file.pending.clear()
        try:
            with anyio.CancelScope(shield=True):
                restart, file.restarted = file.restarted and not file.direct, False
                await _in_thread(_write_through)(file.handle, text, restart)
        except OSError as exc:
            raise self._failed("write", file.part, exc) from exc
        self._write_calls += 1

    async def _finish(self, file: _File, closing: str | None) -> None:
        """Marks the file if incomplete, makes it durable, closes it and gives it its final name."""
        file.finished = True
        for stream_id in file.ended:
            self._files.pop(stream_id, None)
        reason = self._reason(file, closing)
        if reason is not None:
            file.pending.append(self._marker(file, reason))
        try:
            if file.pending:
                await self._flush(file)
            with anyio.CancelScope(shield=True):
                await _in_thread(file.handle.flush)()
                if not file.direct:
                    await _in_thread(os.fsync)(file.handle.fileno())
                await _in_thread(file.handle.close)()
                if not file.direct:
                    await aiofiles.os.replace(file.part, file.path)
        except OSError as exc:
            raise self._failed("finish", file.part, exc) from exc
        finally:
            await _release(file)
        if reason is None:
            self._whole += 1
        else:
            self._incomplete += 1

    def _reason(self, file: _File, closing: str | None) -> str | None:
        """Why the file is incomplete: a stream's outcome, a stream that never ended, or the closing."""
        for ended in file.ended.values():
            reason: str | None
            if ended is None:
                reason = closing or "the stream did not end before the sink closed"
            else:
                reason = _stream_reason(ended, self._mode)
            if reason is not None:
                return reason
        return closing if file.ended else closing or "no stream arrived before the sink closed"

    def _failed(self, action: str, path: Path, exc: OSError) -> SinkError:
        return SinkError(self.name, f"cannot {action} {str(path)!r}: {exc.strerror or exc}")

    def _marker(self, file: _File, reason: str) -> str:
        if self._mode == "text":
            return _MARKER.format(reason=reason, size=file.size)
        streams = {stream: None if end is None else end.outcome for stream, end in file.ended.items()}
        marker = {"type": "rillet.incomplete", "reason": reason, "streams": streams, "lines": file.size}
        return _dumps(marker) + "\n"


async def _release(file: _File) -> None:
    """Closes the handle whatever happened: shielded, and quiet, since the first error was raised."""
    if file.handle.closed:
        return
    with anyio.CancelScope(shield=True):
        try:
            await _in_thread(file.handle.close)()
        except OSError:
            pass
