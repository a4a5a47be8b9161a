"""``rillet replay``: a recorded stream through the same stages and sinks, with no network.

The accumulated message is written in the shape of the SDK's ``Message.model_dump(mode="json")``.
A malformed line ends the replay with an error naming it, after everything before it went
through every sink and the message so far was written: nothing already read is lost.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.apps.run.sse_file import MAX_LINE_BYTES, read_sse_events
from pipeline.apps.shared.build import build_sinks, build_stages
from pipeline.config import RunConfig
from pipeline.errors import ConfigError, InputError, SourceError
from pipeline.events import AttemptStarted, Item
from pipeline.fanout import FanOut
from pipeline.runner import StreamRun, new_stream_id
from pipeline.stages.accumulate import AccumulateStage


class RecordingSource:
    """Sends a recording's events as if they arrived now, one attempt, stamped as read.

    The API never sends a block's delta or stop before its start, nor anything before
    ``message_start``; a recording that does is corrupt, and the stages would drop such an event
    silently, so it is refused here, naming the line.
    """

    def __init__(self, path: Path, stream_id: str, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._path = path
        self._max_line_bytes = max_line_bytes
        self._stream_id = stream_id
        self.attempts = 1

    async def run(self, send: MemoryObjectSendStream[Item]) -> None:
        async with send:
            await send.send(self._item(AttemptStarted(1, "replay", str(self._path))))
            started = False
            open_blocks: set[int] = set()
            for line, event in read_sse_events(self._path, max_line_bytes=self._max_line_bytes):
                kind = event.type
                index: int | None = getattr(event, "index", None)  # checked an int by the reader
                if kind != "message_start" and kind in _IN_A_MESSAGE and not started:
                    raise InputError(f"{self._path}:{line}: {kind!r} before any 'message_start'.")
                if kind in ("content_block_delta", "content_block_stop") and index not in open_blocks:
                    raise InputError(
                        f"{self._path}:{line}: {kind!r} for block {index}, "
                        "which no 'content_block_start' opened."
                    )
                started = started or kind == "message_start"
                if kind == "content_block_start" and index is not None:
                    open_blocks.add(index)
                elif kind == "content_block_stop":
                    open_blocks.discard(index)
                await send.send(self._item(event))
            if not started:
                raise InputError(f"{self._path}: no 'message_start' event: is the recording empty?")

    def _item(self, event: object) -> Item:
        return Item(self._stream_id, event, time.perf_counter_ns())


_IN_A_MESSAGE = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)


async def replay(
    path: Path, config: RunConfig | None, final_json: Path | None, max_line_bytes: int = MAX_LINE_BYTES
) -> int:
    """Replays ``path``; returns the exit status, or raises the input's own error once flushed.

    A recording that ends in an ``error`` event, or before ``message_stop``, is replayed whole and
    then reported as the live run would report it: one line, exit status 1.
    """
    if final_json is not None:
        check_writable(final_json, "--final-json")
    config = config or RunConfig(sinks=[])
    stages = build_stages(config)
    if not any(stage is AccumulateStage for stage in stages):
        stages = [AccumulateStage, *stages]
    stream = StreamRun({"model": ""}, stages, new_stream_id())
    async with FanOut(build_sinks(config, verbose=False, status_line=False)) as fanout:
        result = await stream.run(RecordingSource(path, stream.stream_id, max_line_bytes), fanout)
    if result.message is not None:
        text = json.dumps(result.message, indent=2, ensure_ascii=False) + "\n"
        if final_json is None:
            sys.stdout.write(text)
        else:
            await anyio.Path(final_json).write_text(text, encoding="utf-8")
    if result.failure is not None:
        raise result.failure
    if result.outcome != "completed":
        raise SourceError(f"{path}: {result.error}")
    return 0


def check_writable(path: Path, option: str) -> None:
    """Refuses, before any work, an output path that could not be written at the end."""
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{option}: {str(path)!r} is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{option}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option}: the folder {str(folder)!r} is not writable")
