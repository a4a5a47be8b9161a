"""A taken-over job's source: replay what the log holds, then resume the model where it stopped.

The replayed events go through the stages and the fan-out first (their items keep the attempt
that produced them), so the accumulate, cost and repetition stages carry the whole report; the log
sink recognises them and does not write them again. They are also fed to the source's stitcher,
so the resume is planned by the same code as a dropped connection's (:func:`plan_resume`: prefill
or continue), and the continuation is joined to the open block with overlap removal. A job whose
log already holds the model's ``stop_reason`` is not resumed at all.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from anthropic import AsyncAnthropic
from anyio.streams.memory import MemoryObjectSendStream

from pipeline._failure import Failure
from pipeline._stitch import Stitcher
from pipeline.events import Item
from pipeline.resume import Plan, ResumeSettings, plan_resume
from pipeline.scale.frames import Replay
from pipeline.source import Source

TAKEOVER = Failure("takeover", "the job's previous worker stopped before finishing it", retryable=True)


class LogResumedSource(Source):
    """A :class:`Source` whose first attempt starts from a log instead of the beginning.

    Built on the source's own attempt loop (``_attempt``): the reliability code resumes a dropped
    stream from its stitcher's transcript, and here that transcript is filled from the log first.
    """

    def __init__(
        self,
        client: AsyncAnthropic,
        request: dict[str, Any],
        stream_id: str,
        replay: Replay,
        *,
        resume: ResumeSettings | None = None,
    ) -> None:
        settings = resume or ResumeSettings()
        # The attempt budget is this owner's: earlier owners' attempts are numbered, not counted.
        budget = dataclasses.replace(settings, max_attempts=settings.max_attempts + replay.attempts)
        super().__init__(client, request, stream_id, resume=budget)
        self._replay: Replay | None = replay
        self.attempts = replay.attempts

    async def _attempt(
        self, send: MemoryObjectSendStream[Item], stitcher: Stitcher, plan: Plan
    ) -> Failure | None:
        replay, self._replay = self._replay, None
        if replay is None:
            return await super()._attempt(send, stitcher, plan)
        now = time.perf_counter_ns()
        for attempt, event in replay.events:
            for out in stitcher.feed(event):
                await send.send(Item(self._stream_id, out, now, attempt))
        if stitcher.transcript.stop_reason is not None:
            return None
        resumed = plan_resume(self._request, stitcher.transcript, TAKEOVER, self.settings, self._support)
        return await super()._attempt(send, stitcher, resumed)
