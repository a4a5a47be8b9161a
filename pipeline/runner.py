"""The runner: one task per logical stream runs the stage chain between the source and the fan-out.

Stages share that task (a channel hop costs about a third of the SDK's own parsing, docs/architecture.md);
the only channels are source → chain and fan-out → each sink. Every stream ends with exactly one
:class:`~pipeline.events.StreamEnded` item, whether it completed, was aborted by a stage, failed,
or was cancelled; on cancellation the tail is still delivered, shielded and bounded in time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import anyio
from anthropic import AsyncAnthropic
from anyio.streams.memory import MemoryObjectReceiveStream

from pipeline.admission import Admission
from pipeline.client_delay import ClientDelay
from pipeline.errors import PluginError, RilletError, error_label
from pipeline.events import (
    AbortRequested,
    CostUpdate,
    Item,
    LatencySummary,
    MessageAccumulated,
    Outcome,
    StreamEnded,
)
from pipeline.fanout import FanOut
from pipeline.plugins import check_sink, check_stage, check_stage_factory, is_items, returned
from pipeline.sink import SinkSpec
from pipeline.source.resume import ResumeSettings
from pipeline.source.stream import EventSource, Source
from pipeline.stages import Stage, StageFactory, StreamContext

SOURCE_BUFFER = 64
"""Source → chain channel size: a hop into a buffer of 16 or more costs 5.5 µs, unbuffered 13.7 µs."""

TAIL_TIMEOUT = 10.0
"""How long a cancelled stream may spend delivering its last items to the sinks."""


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What a finished logical stream amounts to: the summary line and API callers read this."""

    stream_id: str
    outcome: Outcome
    stop_reason: str | None
    error: str | None
    error_type: str | None
    message: dict[str, Any] | None
    cost: CostUpdate | None
    latency: LatencySummary | None
    attempts: int
    items: int
    client_delay: ClientDelay
    """Each item's arrival at the socket → its hand-over to the sinks (:mod:`pipeline.client_delay`)."""
    failure: RilletError | None = None


class StreamRun:
    """A logical stream in progress: its stages (for live status) and a way to stop it."""

    def __init__(self, request: dict[str, Any], stages: Sequence[StageFactory], stream_id: str) -> None:
        self.stream_id = stream_id
        self.request = request
        self._factories = tuple(stages)
        self.stages: tuple[Stage, ...] = ()
        self._source_scope = anyio.CancelScope()
        self._outcome: Outcome | None = None
        self._reason: str | None = None
        self._stop_reason: str | None = None
        self._message_stopped = False
        self._message: dict[str, Any] | None = None
        self._cost: CostUpdate | None = None
        self._latency: LatencySummary | None = None
        self._seq = 0
        self._plugin_error: PluginError | None = None
        self.client_delay = ClientDelay()

    def cancel(self, reason: str = "cancelled by request") -> None:
        """Closes the upstream response; the text so far is kept and the outcome is ``cancelled``."""
        self._stop("cancelled", reason)

    def _stop(self, outcome: Outcome, reason: str) -> None:
        if self._outcome is None:
            self._outcome, self._reason = outcome, reason
        self._source_scope.cancel()

    def _observe(self, item: Item) -> None:
        event = item.event
        kind = getattr(event, "type", None)
        if kind == "message_delta":
            self._stop_reason = event.delta.stop_reason
        elif kind == "message_stop":
            self._message_stopped = True
        elif kind == "rillet.abort":
            assert isinstance(event, AbortRequested)
            self._stop(event.outcome, event.reason)
        elif kind == "rillet.cost":
            self._cost = event
        elif kind == "rillet.message":
            assert isinstance(event, MessageAccumulated)
            self._message = event.message
        elif kind == "rillet.latency":
            self._latency = event

    def _chain(self, items: Sequence[Item], start: int = 0) -> Sequence[Item]:
        out = items
        producer: Stage | None = None
        result: object = items
        try:
            for stage in self.stages[start:]:
                if len(out) == 1:
                    out = result = stage.process(out[0])
                    producer = stage
                    continue
                nxt: list[Item] = []
                for item in out:
                    result = stage.process(item)
                    producer = stage
                    nxt.extend(result)  # a non-sequence fails here, and is named below
                out = nxt
            len(out)  # the last stage's result, checked as len() checks the others'
        except TypeError:
            if producer is None or is_items(result):
                raise  # a stage's own bug, raised from inside its process()
            raise returned(producer, "process", result) from None
        return out

    def _finish(self) -> list[Item]:
        out: list[Item] = []
        for position, stage in enumerate(self.stages):
            tail = stage.finish()
            if not is_items(tail):
                raise returned(stage, "finish", tail)
            out.extend(self._chain(tail, position + 1))
        return out

    async def _deliver(self, items: Sequence[Item], fanout: FanOut) -> None:
        for item in items:
            item.seq = self._seq
            self._seq += 1
            self.client_delay.deliver(item)
            self._observe(item)
        await fanout.send_many(items)

    async def run(
        self, source: EventSource, fanout: FanOut, *, admission: Admission | None = None
    ) -> StreamResult:
        """Runs the source and the chain to the end, whatever the end is.

        ``admission``, shared by the streams of a process, spaces out their requests' beginnings.
        """
        self.context = StreamContext(
            self.stream_id, str(self.request.get("model", "")), self.request, time.perf_counter_ns()
        )
        self.stages = tuple(factory(self.context) for factory in self._factories)
        for stage, factory in zip(self.stages, self._factories, strict=True):
            check_stage(stage, factory)
        send, receive = anyio.create_memory_object_stream[Item](SOURCE_BUFFER)
        error: RilletError | None = None

        async def run_source() -> None:
            nonlocal error
            with self._source_scope:
                try:
                    if admission is not None:
                        await admission()
                    await source.run(send)
                except RilletError as exc:
                    error = exc
            send.close()

        async def stop_on_sink_failure() -> None:
            await fanout.failed.wait()
            self._stop("error", "a sink failed")

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_source)
                tg.start_soon(stop_on_sink_failure)
                await self._pump(receive, fanout)
                tg.cancel_scope.cancel()
            if self._plugin_error is not None:
                raise self._plugin_error  # out here: inside the task group it would reach the caller wrapped
        except anyio.get_cancelled_exc_class():
            self._stop("cancelled", "the run was cancelled")
            with anyio.move_on_after(TAIL_TIMEOUT, shield=True):
                await self._end(source, error, fanout)
            raise
        return await self._end(source, error, fanout)

    async def _pump(self, receive: MemoryObjectReceiveStream[Item], fanout: FanOut) -> None:
        """Takes what is waiting without a checkpoint per item: the loop yields only when idle."""
        async with receive:
            while True:
                try:
                    item = receive.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        item = await receive.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                try:
                    chained = self._chain((item,))
                except PluginError as exc:
                    self._plugin_error = exc
                    return
                await self._deliver(chained, fanout)

    async def _end(self, source: EventSource, error: RilletError | None, fanout: FanOut) -> StreamResult:
        await self._deliver(self._finish(), fanout)
        if fanout.failure is not None and self._outcome in (None, "error"):
            self._outcome, error = "error", fanout.failure
            self._reason, error_type = str(fanout.failure), "sink_error"
        elif error is not None and self._outcome is None:
            self._outcome, self._reason, error_type = "error", str(error), error_label(error)
        else:
            error_type = None
        outcome: Outcome = self._outcome or ("completed" if self._message_stopped else "error")
        reason = self._reason if outcome != "completed" else None
        if outcome == "error" and reason is None:
            reason, error_type = "the stream ended before message_stop", "incomplete_stream"
        end = StreamEnded(outcome, self._stop_reason, reason, error_type)
        await self._deliver((self.context.item(end),), fanout)
        return StreamResult(
            stream_id=self.stream_id,
            outcome=outcome,
            stop_reason=self._stop_reason,
            error=reason,
            error_type=error_type,
            message=self._message,
            cost=self._cost,
            latency=self._latency,
            attempts=source.attempts,
            items=self._seq,
            failure=error,
            client_delay=self.client_delay,
        )


@runtime_checkable
class StreamTracer(Protocol):
    """A sink that traces each stream (:class:`sinks.otel.OtelSink`): the pipeline runs each stream,
    its source's attempts included, inside the context ``trace_stream`` returns, so that the spans
    the SDK makes for the attempts are children of the stream's span."""

    def trace_stream(self, stream_id: str, request: dict[str, Any]) -> AbstractContextManager[None]: ...


def new_stream_id() -> str:
    """Random and unguessable: stream ids end up in URLs a browser can open."""
    return uuid.uuid4().hex


class Pipeline:
    """Streams share one fan-out, so many concurrent streams feed the same sinks.

    ``async with Pipeline(client, stages=..., sinks=...) as pipeline: result = await pipeline.run(request)``;
    leaving the block flushes and closes every sink.
    """

    def __init__(
        self,
        client: AsyncAnthropic,
        *,
        stages: Sequence[StageFactory],
        sinks: Sequence[SinkSpec],
        resume: ResumeSettings | None = None,
    ) -> None:
        for factory in stages:
            check_stage_factory(factory)
        for spec in sinks:
            check_sink(spec.sink)
        self.client = client
        self.stages = tuple(stages)
        self.fanout = FanOut(sinks)
        self.resume = resume
        self._tracer = next((spec.sink for spec in sinks if isinstance(spec.sink, StreamTracer)), None)
        self._admission = Admission()

    def stream(self, request: dict[str, Any], stream_id: str | None = None) -> StreamRun:
        """A stream ready to :meth:`StreamRun.run`, so a caller can keep it (to cancel it, to show it)."""
        return StreamRun(request, self.stages, stream_id or new_stream_id())

    async def run(self, request: dict[str, Any], stream_id: str | None = None) -> StreamResult:
        """Runs one logical stream to its end."""
        return await self.run_stream(self.stream(request, stream_id))

    async def run_stream(self, stream: StreamRun) -> StreamResult:
        """Runs a stream made by :meth:`stream` against the API."""
        source = Source(self.client, stream.request, stream.stream_id, resume=self.resume)
        if self._tracer is None:
            return await stream.run(source, self.fanout, admission=self._admission)
        with self._tracer.trace_stream(stream.stream_id, stream.request):
            return await stream.run(source, self.fanout, admission=self._admission)

    async def __aenter__(self) -> Self:
        await self.fanout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.fanout.__aexit__(exc_type, exc, tb)
