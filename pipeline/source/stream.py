"""The source: the API's event stream, stamped on arrival, into a bounded channel.

The SDK builds, authenticates and sends each request and turns an HTTP error into its own
exception (``with_streaming_response``); the body is decoded by :mod:`pipeline.fast_events`, which
skips the SDK's per-event pydantic work but raises an in-stream ``error`` as the SDK does.

Receive times are ``time.perf_counter_ns()`` of when the bytes completing an event came off the
transport (stamped by the client of :mod:`pipeline.client`; for another client, the moment the
source read them), before any queue, so neither parsing nor a slow stage or sink distorts
latency figures. The source owns every HTTP attempt of a logical stream (the SDK's own retries
are off, ``max_retries=0``): each is announced by an :class:`~pipeline.events.AttemptStarted`
item and answered by a :class:`~pipeline.events.ResponseHeaders` item. A 429, 529 or 5xx is
retried after a backoff that honours ``retry-after``; a drop, a stall or an in-stream error is
resumed (:mod:`pipeline.source.resume`) and the continuation stitched into the same logical stream
(:mod:`pipeline.source._stitch`); anything else fails at once with a one-line :class:`SourceError`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anthropic
import anyio
import httpx2
from anthropic import AsyncAnthropic
from anthropic.types import RawMessageStopEvent
from anyio.streams.memory import MemoryObjectSendStream

from pipeline.arrivals import arrival, sent_ns
from pipeline.errors import SourceError
from pipeline.events import AttemptStarted, Item, ResponseHeaders
from pipeline.fast_events import EventParser, observed, stream_error
from pipeline.source._budget import fit_budget
from pipeline.source._failure import INCOMPLETE, Failure, classify, describe, error_type_of, stalled
from pipeline.source._stitch import Stitcher, Transcript
from pipeline.source.backoff import Retries
from pipeline.source.resume import PREFILL_SUPPORT, Plan, PrefillSupport, ResumeSettings, plan_resume

__all__ = ["CONTINUED", "EventSource", "Source", "describe", "error_type_of"]

CONTINUED = Failure(
    "continued", "the stream was begun elsewhere and is continued from its log", retryable=True
)
"""Why the first attempt of a :class:`Source` given a ``history`` is a resume, not a start."""


class EventSource(Protocol):
    """Anything that fills a stream's channel: the live API, a recorded file, a Redis log."""

    attempts: int

    async def run(self, send: MemoryObjectSendStream[Item]) -> None:
        """Sends every item, closes ``send``, and raises a :class:`RilletError` on failure."""
        ...


class Source:
    """One logical stream's HTTP attempts against the Messages API."""

    def __init__(
        self,
        client: AsyncAnthropic,
        request: dict[str, Any],
        stream_id: str,
        *,
        resume: ResumeSettings | None = None,
        prefill_support: PrefillSupport | None = None,
        rng: random.Random | None = None,
        history: Sequence[tuple[int, Any]] = (),
    ) -> None:
        """``history``: the SDK events an earlier process already streamed, each with its attempt
        number (a job's log, after a takeover). They are sent first, with their own attempt
        numbers, then the stream is resumed where they stop, like a dropped connection, or not at
        all when they hold the ``stop_reason``. Attempts are numbered on from theirs; the attempt
        budget is this run's own."""
        self._client = client
        self._request = request
        self._stream_id = stream_id
        self.settings = resume or ResumeSettings()
        self._support = prefill_support or PREFILL_SUPPORT
        self._rng = rng
        self._history = tuple(history)
        self.attempts = max((attempt for attempt, _ in self._history), default=0)

    async def run(self, send: MemoryObjectSendStream[Item]) -> None:
        """Streams every event into ``send``; raises :class:`SourceError` when no attempt can succeed."""
        settings = self.settings
        stitcher = Stitcher(hold_tools=settings.mode != "off")
        retries = Retries(
            max_attempts=settings.max_attempts,
            max_total_seconds=settings.max_total_seconds,
            initial=settings.backoff_initial,
            maximum=settings.backoff_max,
            wait=settings.wait,
            rng=self._rng,
        )
        first = self.attempts
        plan: Plan | None = Plan("initial", "start", self._request)
        async with send:
            if self._history:
                plan = await self._replay(send, stitcher)
            while plan is not None:
                failure = await self._attempt(send, stitcher, plan)
                for event in stitcher.salvage():
                    await self._send(send, event, time.perf_counter_ns())
                transcript = stitcher.transcript
                if failure is None or transcript.stop_reason is not None:
                    break
                if not failure.retryable:
                    raise SourceError(failure.message, failure.reason)
                plan = await self._resume(transcript, failure)
                made = self.attempts - first
                delay = retries.delay(made, retry_after=failure.retry_after, slow=failure.slow)
                if failure.prefill_rejected and delay is not None:
                    delay = 0.0  # a capability learnt, not an outage: switch to continue at once
                if delay is None:
                    raise SourceError(
                        f"{failure.message}; gave up after {made} attempts in {retries.elapsed():.1f} s",
                        failure.reason,
                    )
                await retries.sleep(delay)
            if not stitcher.transcript.stopped:
                await self._send(send, RawMessageStopEvent(type="message_stop"), time.perf_counter_ns())

    async def _replay(self, send: MemoryObjectSendStream[Item], stitcher: Stitcher) -> Plan | None:
        """Sends the history as its attempts produced it; the plan that continues it, if it must be."""
        now = time.perf_counter_ns()
        for attempt, event in self._history:
            for out in stitcher.feed(event):
                await send.send(Item(self._stream_id, out, now, attempt))
        if stitcher.transcript.stop_reason is not None:
            return None
        return await self._resume(stitcher.transcript, CONTINUED)

    async def _resume(self, transcript: Transcript, failure: Failure) -> Plan:
        """The attempt after ``failure``, its budget counted by the API (:mod:`pipeline.source._budget`)."""
        plan = plan_resume(self._request, transcript, failure, self.settings, self._support)
        chars_per_token = self.settings.chars_per_token
        fitted = await fit_budget(self._client, plan.blocks, plan.request, self._request, chars_per_token)
        return dataclasses.replace(plan, request=fitted)

    async def _attempt(
        self, send: MemoryObjectSendStream[Item], stitcher: Stitcher, plan: Plan
    ) -> Failure | None:
        """One HTTP attempt; returns why it ended early, or None when the message stopped."""
        self.attempts += 1
        attempt = self.attempts
        now = time.perf_counter_ns()
        await self._send(send, AttemptStarted(attempt, plan.strategy, plan.reason), now)
        for event in stitcher.begin(plan.join):
            await self._send(send, event, now)
        watchdog = _Watchdog(self.settings.idle_timeout)
        failure: Failure | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog.run, tg.cancel_scope)
            try:
                await self._stream(send, stitcher, plan.request, watchdog)
            except (anthropic.APIError, httpx2.TransportError) as exc:
                failure = classify(exc)
            tg.cancel_scope.cancel()
        if watchdog.fired:
            return stalled(self.settings.idle_timeout)
        if failure is None and not stitcher.transcript.stopped:
            return INCOMPLETE
        return failure

    async def _stream(
        self,
        send: MemoryObjectSendStream[Item],
        stitcher: Stitcher,
        request: dict[str, Any],
        watchdog: _Watchdog,
    ) -> None:
        client = self._client
        async with client.messages.with_streaming_response.create(**request, stream=True) as raw:
            response = raw.http_response
            received = time.perf_counter_ns()
            headers = ResponseHeaders(
                self.attempts, response.headers.get("request-id"), response.status_code, sent_ns(response)
            )
            await self._send(send, headers, received)
            feed = stitcher.feed
            stamp = arrival(response)
            parser = EventParser(lambda data: stream_error(client, response, data))
            # The SDK's span of the call learns what the SDK's stream iterator would tell it.
            observer = getattr(response.stream, "stream_observer", None)
            if observer is not None:
                observer.begin()
            try:
                async for chunk in response.aiter_bytes():
                    # When the bytes that completed these events arrived, before any parsing.
                    received = stamp.ns if stamp is not None else time.perf_counter_ns()
                    for event in parser.feed(chunk):
                        if observer is not None:
                            observer.item(observed(event))
                        watchdog.last_ns = _SENDING
                        for out in feed(event):
                            await self._send(send, out, received)
                        watchdog.last_ns = time.perf_counter_ns()
            except Exception as exc:
                if observer is not None:
                    observer.end("failed", exc)
                raise

    async def _send(self, send: MemoryObjectSendStream[Item], event: Any, received_ns: int) -> None:
        """Waits only when the chain is behind: a checkpoint per event would cost a loop turn each."""
        item = Item(self._stream_id, event, received_ns, self.attempts)
        try:
            send.send_nowait(item)
        except anyio.WouldBlock:
            await send.send(item)


_SENDING = 2**62
"""``last_ns`` while the loop is sending: a sink holding the source back is not silence."""


class _Watchdog:
    """Cancels an attempt that has received nothing for ``idle`` seconds.

    Moving an anyio deadline costs about 13 µs (a timer re-armed), most of the SDK's 16.5 µs per
    event; this task instead wakes once per ``idle`` and compares with the last read, which the
    stream loop records with one clock read after it has sent an event on (so time a sink spends
    holding the source back under backpressure is never taken for silence).
    """

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.last_ns = time.perf_counter_ns()
        self.fired = False

    async def run(self, scope: anyio.CancelScope) -> None:
        wait = self.idle
        while True:
            await anyio.sleep(wait)
            silent = (time.perf_counter_ns() - self.last_ns) / 1e9
            if silent >= self.idle:
                self.fired = True
                scope.cancel()
                return
            wait = min(self.idle, self.idle - silent)
