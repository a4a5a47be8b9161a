"""A sink open for a long-running process, lent to the fan-out of every job the process runs.

A worker gives each job a fan-out of its own, but a metrics sink must outlive them all: one
``/metrics``, counters that keep counting. So each job's fan-out gets a :class:`Loan` that writes
to the shared sink without opening or closing it, and :class:`Lanes` reports the lanes of every
job's fan-out as one lane per sink name: depth and capacity summed over the running jobs (with
none running, depth 0 of one job's buffer); written, dropped and errors over every job so far (a
job's figures are folded in when its whole fan-out has closed, :meth:`SharedSinks.returned`), so
the counters never go down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from types import TracebackType
from typing import Any, Self

from pipeline.events import Item
from pipeline.fanout import SinkStatistics, StatisticsProvider
from pipeline.sink import SinkSpec


def _add(total: SinkStatistics | None, lane: SinkStatistics) -> SinkStatistics:
    if total is None:
        return lane
    return SinkStatistics(
        name=lane.name,
        queued=total.queued + lane.queued,
        max_items=total.max_items + lane.max_items,
        written=total.written + lane.written,
        dropped=total.dropped + lane.dropped,
        errors=total.errors + lane.errors,
        disabled=total.disabled or lane.disabled,
        last_error=lane.last_error or total.last_error,
    )


class Lanes:
    """The lanes of many fan-outs, one after another or at once, as one :data:`StatisticsProvider`."""

    def __init__(self) -> None:
        self._live: list[StatisticsProvider] = []
        self._done: dict[str, SinkStatistics] = {}
        self._capacity: dict[str, int] = {}

    def add(self, provider: StatisticsProvider) -> None:
        if provider not in self._live:
            self._live.append(provider)

    def retire(self, provider: StatisticsProvider) -> None:
        """A fan-out closed: its counts stay in the totals, its buffers leave the depth and capacity."""
        if provider not in self._live:
            return
        self._live.remove(provider)
        for lane in provider():
            self._capacity[lane.name] = lane.max_items
            idle = dataclasses.replace(lane, queued=0, max_items=0, disabled=False)
            self._done[lane.name] = _add(self._done.get(lane.name), idle)

    def __call__(self) -> tuple[SinkStatistics, ...]:
        """With no job running, a sink reports one job's buffer size, so that its fill reads 0, not 0/0."""
        merged: dict[str, SinkStatistics] = {}
        for provider in self._live:
            for lane in provider():
                merged[lane.name] = _add(merged.get(lane.name), lane)
        for name, done in self._done.items():
            live = merged.get(name)
            if live is None:
                merged[name] = dataclasses.replace(done, max_items=self._capacity[name])
            else:
                merged[name] = _add(live, done)
        return tuple(merged.values())


class Loan:
    """The shared ``sink`` as one fan-out sees it: writes go through, opening and closing do not."""

    def __init__(self, sink: Any, lanes: Lanes) -> None:
        self.name: str = sink.name
        self._sink = sink
        self._lanes = lanes

    def observe_fanout(self, provider: StatisticsProvider) -> None:
        self._lanes.add(provider)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def write(self, batch: Sequence[Item]) -> None:
        await self._sink.write(batch)


class SharedSinks:
    """Opens ``specs``' sinks for as long as it is entered, and lends them to each job's fan-out."""

    def __init__(self, specs: Sequence[SinkSpec]) -> None:
        self._specs = tuple(specs)
        self.lanes = Lanes()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            for spec in self._specs:
                await stack.enter_async_context(spec.sink)
                observe = getattr(spec.sink, "observe_fanout", None)
                if observe is not None:
                    observe(self.lanes)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def lend(self) -> list[SinkSpec]:
        """Specs for one job's fan-out, with the configured buffers and error policies."""
        return [SinkSpec(Loan(spec.sink, self.lanes), spec.buffer, spec.on_error) for spec in self._specs]

    def trace_stream(self, stream_id: str, request: dict[str, Any]) -> AbstractContextManager[None]:
        """A job's stream run in the tracing sink's context (:class:`~pipeline.runner.StreamTracer`),
        as a :class:`~pipeline.runner.Pipeline` runs its streams; nothing without such a sink."""
        for spec in self._specs:
            trace_stream = getattr(spec.sink, "trace_stream", None)
            if trace_stream is not None:
                context: AbstractContextManager[None] = trace_stream(stream_id, request)
                return context
        return nullcontext()

    def returned(self, provider: StatisticsProvider) -> None:
        """A job's fan-out has closed (every lane drained): its lanes' final counts join the totals."""
        self.lanes.retire(provider)
