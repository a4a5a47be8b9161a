"""Pushing a batch job's metrics to a Pushgateway, the way Prometheus advises for batch jobs.

A job's group is addressed by ``job`` and a grouping key. While it runs, ``pushadd`` (POST) updates
the metrics it sends and leaves the rest of the group alone. At its end a success is pushed with
``push`` (PUT: the group becomes exactly this run) together with
``rillet_job_last_success_timestamp_seconds``; a failure is pushed with ``pushadd`` *without* that
gauge, so the time of the previous success survives and an alert on its age fires.
``delete_on_success`` removes the group after a success instead, for jobs whose series should not
outlive them. The HTTP calls block, so they run in a worker thread.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping

import anyio.to_thread
from prometheus_client import delete_from_gateway, push_to_gateway, pushadd_to_gateway
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.errors import SinkError

PUSH_TIMEOUT = 10.0
"""Seconds one push may take: a dead gateway must not hold the end of a run for long."""


class _WithJobGauges:
    """The sink's registry plus the job's own gauges, collected together for one push."""

    def __init__(self, registry: Collector, gauges: Iterable[Metric]) -> None:
        self._registry = registry
        self._gauges = tuple(gauges)

    def collect(self) -> Iterable[Metric]:
        yield from self._registry.collect()
        yield from self._gauges


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class Pushgateway:
    """One job's group on one Pushgateway; every method raises :class:`SinkError` chained to the cause."""

    def __init__(
        self, sink: str, address: str, job: str, grouping: Mapping[str, str], registry: Collector
    ) -> None:
        self._sink = sink
        self._address = address
        self._job = job
        self._grouping = dict(grouping)
        self._registry = registry
        self._started = time.time()

    async def push_progress(self) -> None:
        """Updates the group with the metrics so far, leaving the last success untouched."""
        await self._call("pushadd", pushadd_to_gateway, registry=self._with_gauges(success=False))

    async def push_result(self, *, success: bool, delete_on_success: bool) -> None:
        """Ends the job: records its success, or deletes the group when asked, or records a failure."""
        if success and delete_on_success:
            await self._call("delete", delete_from_gateway)
        elif success:
            await self._call("push", push_to_gateway, registry=self._with_gauges(success=True))
        else:
            await self._call("pushadd", pushadd_to_gateway, registry=self._with_gauges(success=False))

    def _with_gauges(self, *, success: bool) -> _WithJobGauges:
        now = time.time()
        gauges = [
            _gauge("rillet_job_duration_seconds", "How long the batch job has run.", now - self._started)
        ]
        if success:
            gauges.append(
                _gauge(
                    "rillet_job_last_success_timestamp_seconds",
                    "When the job last succeeded (Unix time).",
                    now,
                )
            )
        return _WithJobGauges(self._registry, gauges)

    async def _call(self, what: str, function: Callable[..., None], **kwargs: object) -> None:
        call = functools.partial(
            function,
            self._address,
            job=self._job,
            grouping_key=self._grouping,
            timeout=PUSH_TIMEOUT,
            **kwargs,
        )
        try:
            await anyio.to_thread.run_sync(call)
        except OSError as exc:
            raise SinkError(
                self._sink,
                f"{what} to the Pushgateway at {self._address!r} (job {self._job!r}) failed: {exc}",
            ) from exc
