"""``rillet worker``'s process: Redis, the API (or the embedded simulator), metrics, until a signal.

Apart from :mod:`pipeline.apps.scale.cli` so that ``rillet jobs`` and ``rillet submit`` import neither
the SDK nor the simulator; a process that forks workers imports this module to have them warm.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

import anyio

from pipeline.apps.scale._redis import RedisCancelSignals, RedisEventLog, RedisJobQueue, open_redis
from pipeline.apps.scale.metrics import ScaleMetrics
from pipeline.apps.scale.settings import RedisConfig
from pipeline.apps.scale.worker import Worker, WorkerSettings
from pipeline.apps.shared.build import build_stages, tracer_provider
from pipeline.apps.shared.endpoint import open_endpoint
from pipeline.client import make_client
from pipeline.config import RunConfig
from pipeline.sink import SinkSpec
from sinks.shared import SharedSinks


async def run_worker(
    config: RunConfig,
    redis: RedisConfig,
    settings: WorkerSettings,
    metrics: ScaleMetrics,
    sinks: Sequence[SinkSpec] = (),
) -> int:
    """Runs until SIGINT or SIGTERM; running jobs are left to be taken over after their lease.

    ``sinks`` (metrics, on ``metrics``' registry) stay open for the worker's life, lent to each job.
    """
    async with SharedSinks(sinks) as shared:
        for spec in sinks:
            address = getattr(spec.sink, "address", None)
            if address is not None:
                sys.stderr.write(f"rillet worker: metrics on http://{address[0]}:{address[1]}/metrics\n")
        async with open_redis(redis) as client, open_endpoint(config.api.base_url) as endpoint:
            queue = RedisJobQueue(client, redis)
            await queue.ensure_group()
            api = make_client(
                api_key=endpoint.api_key,
                base_url=endpoint.base_url,
                max_connections=max(config.api.max_connections, settings.concurrency),
                timeout=config.api.timeout,
                tracer_provider=tracer_provider(sinks),
            )
            worker = Worker(
                queue,
                RedisEventLog(client, redis),
                RedisCancelSignals(client, redis),
                api,
                build_stages(config),
                redis,
                settings,
                metrics,
                shared,
            )
            # One write: worker processes sharing a pipe must not interleave their lines.
            sys.stderr.write(f"rillet worker {settings.consumer}: ready ({settings.concurrency} slots)\n")
            sys.stderr.flush()
            async with api, anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
                await worker.run()
    return 0


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
