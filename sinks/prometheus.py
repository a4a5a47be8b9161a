"""Prometheus metrics of a run: served on ``/metrics`` while it lasts, pushed to a Pushgateway at its end.

The sink keeps per-stream state keyed by ``stream_id``: the children of every labelled family are
bound once, when the stream's ``message_start`` names its model, so an event costs a dict lookup and
at most an ``inc`` or ``observe`` (about 1 µs), never a label lookup. Events arriving before the model
is known wait in that state and are replayed when it is. Events by type are counted per batch, and
so is the client's delay (``rillet_client_delay_seconds``, unlabelled: it is the process's backlog,
whatever the model), live while streams run.

Tokens and cost rise while a stream runs, so a dashboard shows a live rate: each
:class:`~pipeline.events.CostUpdate` (usage summed over every attempt, output estimated until the
API reports it) adds what it grew by. A counter cannot go down, so when the stream ends, what the
estimates counted beyond its final usage goes to a ``*_overestimated_total`` counter of its own:
billed = counted - overestimated, exact per stream. A cost genai-prices could not price (``nan``)
stays out of the USD counters.
Queue depth, drops and errors per sink are read from the fan-out at scrape time
(:class:`sinks._metrics.FanOutCollector`), so they are always current.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter

from pipeline.errors import ConfigError, cannot_listen
from pipeline.events import CostUpdate, FirstToken, Item, LatencySummary, StreamEnded, Usage
from pipeline.fanout import StatisticsProvider
from sinks._metrics import (
    DURATION_BUCKETS,
    TOKEN_TYPES,
    TTFT_BUCKETS,
    Families,
    FanOutCollector,
    create_families,
    observe_many,
)
from sinks._pushgateway import Pushgateway
from sinks.metrics_server import MetricsServer

DEFAULT_ADDRESS = "127.0.0.1:9464"
"""Loopback by default: metrics name models and costs, and must not reach a network by accident."""

MAX_OPEN_STREAMS = 100_000
"""Streams tracked at once: a stream whose end was dropped by a full buffer is forgotten past this."""

UNKNOWN_MODEL = "unknown"
"""The model label of a stream that ended before its ``message_start``."""


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) → (host, port); the error names the value and the fix."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics address {address!r} is not host:port, e.g. {DEFAULT_ADDRESS!r}")
    return host.strip("[]"), int(port)


def _token_counts(usage: Usage) -> tuple[int, int, int, int]:
    """Usage in the order of :data:`~sinks._metrics.TOKEN_TYPES`."""
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    )


class _Stream:
    """One stream's metric children, bound to its model once, and what it holds until its end."""

    __slots__ = (
        "cost",
        "cost_usd",
        "cost_usd_over",
        "counted",
        "counted_usd",
        "end_to_end",
        "gap",
        "model",
        "pending",
        "reconnects",
        "repetitions",
        "tokens",
        "tokens_over",
        "tpot",
        "ttft",
    )

    def __init__(self) -> None:
        self.pending: list[Item] | None = []
        self.cost: CostUpdate | None = None
        self.end_to_end: float | None = None
        self.counted = [0] * len(TOKEN_TYPES)
        self.counted_usd = 0.0

    def bind(self, families: Families, model: str) -> list[Item]:
        """Binds the children for ``model``; returns the items that waited for it."""
        self.ttft = {
            "delta": families.time_to_first_delta.labels(model),
            "text": families.time_to_first_text.labels(model),
            "message_start": families.time_to_message_start.labels(model),
        }
        self.gap = families.delta_gap.labels(model)
        self.tpot = families.time_per_output_token.labels(model)
        self.model = model
        self.tokens = [families.tokens.labels(model, kind) for kind in TOKEN_TYPES]
        self.tokens_over = [families.tokens_overestimated.labels(model, kind) for kind in TOKEN_TYPES]
        self.cost_usd = families.cost.labels(model)
        self.cost_usd_over = families.cost_overestimated.labels(model)
        self.reconnects = families.reconnects.labels(model)
        self.repetitions = families.repetitions.labels(model)
        pending, self.pending = self.pending or [], None
        return pending

    def count_up(self, cost: CostUpdate) -> None:
        """Adds what the usage and cost grew by since the last update; a shrinking estimate adds nothing."""
        for index, count in enumerate(_token_counts(cost.usage)):
            grown = count - self.counted[index]
            if grown > 0:
                self.tokens[index].inc(grown)
                self.counted[index] = count
        if math.isfinite(cost.usd) and cost.usd > self.counted_usd:
            self.cost_usd.inc(cost.usd - self.counted_usd)
            self.counted_usd = cost.usd

    def correct(self, final: CostUpdate) -> None:
        """At the stream's end: what the estimates counted beyond the final usage, in its own counters."""
        self.count_up(final)
        for child, counted, count in zip(
            self.tokens_over, self.counted, _token_counts(final.usage), strict=True
        ):
            if counted > count:
                child.inc(counted - count)
        if math.isfinite(final.usd) and self.counted_usd > final.usd:
            self.cost_usd_over.inc(self.counted_usd - final.usd)


class PrometheusSink:
    """Serves rillet's metrics on ``address`` for the sink's lifetime and pushes them to ``pushgateway``.

    ``registry`` is the :class:`~prometheus_client.CollectorRegistry` the families live in (None: a
    private one), never the global default. ``address`` ``""`` or None serves nothing. With
    ``pushgateway`` the run is a batch job: its group (``job`` plus ``grouping``) gets the metrics at
    the end (and every ``push_interval`` seconds while events flow), with the time of the last
    success, or is deleted after a success when ``delete_on_success``. Without a pushgateway, a sink
    that serves waits at its exit up to ``linger`` seconds for one more scrape, so that a run shorter
    than the scrape interval is still seen with its end. ``ttft_buckets`` (the three time-to-first
    histograms) and ``duration_buckets`` (request duration) are upper bounds in seconds (None: the
    defaults of :mod:`sinks._metrics`).
    """

    def __init__(
        self,
        *,
        address: str | None = DEFAULT_ADDRESS,
        pushgateway: str | None = None,
        job: str = "rillet",
        grouping: Mapping[str, str] | None = None,
        delete_on_success: bool = False,
        push_interval: float | None = None,
        linger: float = 0.0,
        ttft_buckets: Sequence[float] | None = None,
        duration_buckets: Sequence[float] | None = None,
        registry: CollectorRegistry | None = None,
        name: str = "prometheus",
    ) -> None:
        if push_interval is not None and (push_interval <= 0 or not pushgateway):
            raise ConfigError(
                f"push_interval must be positive seconds with a pushgateway, got {push_interval!r}"
            )
        if linger < 0:
            raise ConfigError(f"linger must be seconds >= 0, got {linger!r}")
        self.name = name
        self._linger = linger
        self.registry = CollectorRegistry() if registry is None else registry
        self._bind_to = parse_address(address) if address else None
        self._families = create_families(
            self.registry,
            ttft_buckets=TTFT_BUCKETS if ttft_buckets is None else ttft_buckets,
            duration_buckets=DURATION_BUCKETS if duration_buckets is None else duration_buckets,
        )
        self._lanes = FanOutCollector()
        self.registry.register(self._lanes)
        self._pushgateway = (
            Pushgateway(name, pushgateway, job, grouping or {}, self.registry) if pushgateway else None
        )
        self._delete_on_success = delete_on_success
        self._push_interval = push_interval
        self._next_push = float("inf")
        self._server: MetricsServer | None = None
        self._streams: dict[str, _Stream] = {}
        self._event_counts: dict[str, Counter] = {}
        self._failed_streams = 0
        self._closed = False
        self._handlers: dict[str, Callable[[_Stream, Item], None]] = {
            "message_start": self._message_start,
            "rillet.end": self._stream_ended,
        }
        self._bound_handlers: dict[str, Callable[[_Stream, Item], None]] = {
            "rillet.attempt": self._attempt_started,
            "rillet.first_token": self._first_token,
            "rillet.latency": self._latency,
            "rillet.cost": self._cost,
            "rillet.repetition": self._repetition,
        }

    @property
    def address(self) -> tuple[str, int] | None:
        """Where ``/metrics`` is served (the real port when 0 was asked for), while the sink is open."""
        return None if self._server is None else self._server.address

    def observe_fanout(self, provider: StatisticsProvider) -> None:
        """Called by the fan-out: lets scrapes read every sink's queue depth, drops and errors."""
        self._lanes.provider = provider

    async def __aenter__(self) -> Self:
        if self._bind_to is not None:
            host, port = self._bind_to
            try:
                self._server = MetricsServer(self.registry, host, port)
            except OSError as exc:
                raise cannot_listen(host, port, exc, f"sink {self.name!r}") from exc
        if self._push_interval is not None:
            self._next_push = anyio.current_time() + self._push_interval
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._pushgateway is not None:
                success = exc_type is None and self._failed_streams == 0 and not self._streams
                await self._pushgateway.push_result(
                    success=success, delete_on_success=self._delete_on_success
                )
            elif self._server is not None and self._linger > 0:
                await anyio.to_thread.run_sync(self._server.wait_for_scrape, self._linger)
        finally:
            await self._stop_server()

    async def _stop_server(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.close)

    async def write(self, batch: Sequence[Item]) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        counts: dict[str, int] = {}
        delays: list[float] = []
        for item in batch:
            kind = getattr(item.event, "type", "unknown")
            counts[kind] = counts.get(kind, 0) + 1
            if item.delivered_ns:
                delays.append((item.delivered_ns - item.received_ns) / 1e9)
            if kind in self._handlers:
                self._handlers[kind](self._stream(item.stream_id), item)
            elif kind in self._bound_handlers:
                self._dispatch_bound(self._stream(item.stream_id), item, self._bound_handlers[kind])
        for kind, count in counts.items():
            child = self._event_counts.get(kind)
            if child is None:
                child = self._event_counts[kind] = self._families.events.labels(str(kind))
            child.inc(count)
        if delays:
            observe_many(self._families.client_delay, delays)
        if self._push_interval is not None and anyio.current_time() >= self._next_push:
            await self._push_progress(self._push_interval)

    async def _push_progress(self, interval: float) -> None:
        """Periodic pushes ride on writes: no task of their own, and none while nothing happens."""
        assert self._pushgateway is not None
        await self._pushgateway.push_progress()
        self._next_push = anyio.current_time() + interval

    def _stream(self, stream_id: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            if len(self._streams) >= MAX_OPEN_STREAMS:
                del self._streams[next(iter(self._streams))]
                self._families.streams_in_progress.dec()
            stream = self._streams[stream_id] = _Stream()
            self._families.streams_in_progress.inc()
        return stream

    @staticmethod
    def _dispatch_bound(stream: _Stream, item: Item, handler: Callable[[_Stream, Item], None]) -> None:
        if stream.pending is None:
            handler(stream, item)
        else:
            stream.pending.append(item)

    def _bind(self, stream: _Stream, model: str) -> None:
        for item in stream.bind(self._families, model):
            self._bound_handlers[item.event.type](stream, item)

    def _message_start(self, stream: _Stream, item: Item) -> None:
        if stream.pending is not None:
            self._bind(stream, str(item.event.message.model))

    def _attempt_started(self, stream: _Stream, item: Item) -> None:
        if item.event.attempt > 1:
            stream.reconnects.inc()

    def _first_token(self, stream: _Stream, item: Item) -> None:
        event: FirstToken = item.event
        child = stream.ttft.get(event.kind)
        if child is not None:
            child.observe(event.seconds)

    def _latency(self, stream: _Stream, item: Item) -> None:
        event: LatencySummary = item.event
        observe_many(stream.gap, event.gaps)
        if event.time_per_output_token is not None:
            stream.tpot.observe(event.time_per_output_token)
        stream.end_to_end = event.end_to_end

    @staticmethod
    def _cost(stream: _Stream, item: Item) -> None:
        stream.cost = item.event
        stream.count_up(item.event)

    def _repetition(self, stream: _Stream, item: Item) -> None:
        stream.repetitions.inc()

    def _stream_ended(self, stream: _Stream, item: Item) -> None:
        if stream.pending is not None:
            self._bind(stream, stream.cost.model if stream.cost is not None else UNKNOWN_MODEL)
        end: StreamEnded = item.event
        families, model = self._families, stream.model
        if stream.cost is not None:
            stream.correct(stream.cost)
        families.requests.labels(model, end.outcome).inc()
        if end.error_type is not None:
            families.request_errors.labels(model, end.error_type).inc()
        if stream.end_to_end is not None:
            families.request_duration.labels(model, end.outcome).observe(stream.end_to_end)
        if end.outcome in ("error", "cancelled"):
            self._failed_streams += 1
        del self._streams[item.stream_id]
        families.streams_in_progress.dec()
