"""``rillet replay``: a recorded stream through the same stages and sinks, with no network.

The accumulated message is written in the shape of the SDK's ``Message.model_dump(mode="json")``.
A malformed line ends the replay with an error naming it, after everything before it went
through every sink and the message so far was written: nothing already read is lost.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.app.build import build_sinks, build_stages
from pipeline.config import RunConfig
from pipeline.errors import InputError
from pipeline.events import AttemptStarted, Item
from pipeline.fanout import FanOut
from pipeline.runner import StreamRun, new_stream_id
from pipeline.sse_file import read_sse_events
from pipeline.stages.accumulate import AccumulateStage


class RecordingSource:
    """Sends a recording's events as if they arrived now, one attempt, stamped as read."""

    def __init__(self, path: Path, stream_id: str) -> None:
        self._path = path
        self._stream_id = stream_id
        self.attempts = 1

    async def run(self, send: MemoryObjectSendStream[Item]) -> None:
        async with send:
            await send.send(self._item(AttemptStarted(1, "replay", str(self._path))))
            for recorded in read_sse_events(self._path):
                await send.send(self._item(recorded.event))

    def _item(self, event: object) -> Item:
        return Item(self._stream_id, event, time.perf_counter_ns())


async def replay(path: Path, config: RunConfig | None, final_json: Path | None) -> int:
    """Replays ``path``; returns the exit status, or raises the input's own error once flushed."""
    config = config or RunConfig(sinks=[])
    stages = build_stages(config)
    if not any(stage is AccumulateStage for stage in stages):
        stages = [AccumulateStage, *stages]
    stream = StreamRun({"model": ""}, stages, new_stream_id())
    async with FanOut(build_sinks(config, verbose=False, status_line=False)) as fanout:
        result = await stream.run(RecordingSource(path, stream.stream_id), fanout)
    if result.message is not None:
        text = json.dumps(result.message, indent=2, ensure_ascii=False) + "\n"
        if final_json is None:
            sys.stdout.write(text)
        else:
            await anyio.Path(final_json).write_text(text, encoding="utf-8")
    if isinstance(result.failure, InputError):
        raise result.failure
    return 0 if result.outcome == "completed" else 1
