"""``rillet submit``, ``rillet worker`` and ``rillet jobs``: argument parsing, then Redis.

Redis unreachable at start is a :class:`ConfigError` (one line, exit status 2, from the CLI's
main); Redis lost later is ridden out with backoff (:mod:`pipeline.scale._retry`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import anyio

from pipeline.app.build import build_request, build_stages
from pipeline.app.endpoint import open_endpoint
from pipeline.client import make_client
from pipeline.config import RunConfig
from pipeline.errors import ConfigError, InputError
from pipeline.jobs.cli import with_overrides
from pipeline.scale._redis import RedisCancelSignals, RedisEventLog, RedisJobQueue, open_redis
from pipeline.scale.metrics import ScaleMetrics, serve_metrics
from pipeline.scale.settings import RedisConfig, load_scale_config
from pipeline.scale.status import cancel_line, job_lines, overview
from pipeline.scale.worker import Worker, WorkerSettings

CANCEL_REASON = "cancelled with rillet jobs --cancel"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser("submit", help="enqueue a report job in Redis and print its id")
    _common(submit)
    prompt = submit.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="the prompt text")
    prompt.add_argument("--prompt-file", type=Path, help="a file holding the prompt")
    submit.add_argument("--model", help="the model to ask (default: the config's)")
    submit.add_argument("--max-tokens", type=int, help="the output token budget")
    submit.add_argument("--id", dest="job_id", help="the job id (default: a random one)")
    submit.set_defaults(func=_submit)

    worker = commands.add_parser("worker", help="run report jobs from Redis until stopped")
    _common(worker)
    worker.add_argument("--concurrency", type=int, default=4, help="jobs run at once (default: 4)")
    worker.add_argument("--out-dir", type=Path, help="write each finished report here as <id>.md")
    worker.add_argument("--metrics-port", type=int, help="serve /metrics on this port (0: a free one)")
    worker.set_defaults(func=_worker)

    jobs = commands.add_parser("jobs", help="show queued, running and finished jobs")
    jobs.add_argument("job_id", nargs="?", help="one job in detail")
    jobs.add_argument(
        "--cancel", action="store_true", help="stop the job: its text so far is kept (needs a job id)"
    )
    jobs.add_argument("--config", type=Path, help="a TOML file with a [redis] section")
    jobs.add_argument("--redis", help="the Redis URL (wins over the config's [redis] url)")
    jobs.set_defaults(func=_jobs)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", type=Path, help="a TOML file with a [redis] section")
    parser.add_argument("--redis", help="the Redis URL (wins over the config's [redis] url)")


def _load(args: argparse.Namespace) -> tuple[RunConfig, RedisConfig]:
    config, redis = load_scale_config(args.config)
    if args.redis:
        redis = redis.with_url(args.redis)
    return config, redis


def _submit(args: argparse.Namespace) -> int:
    config, redis = _load(args)
    args.out = None
    request = build_request(with_overrides(config, args).request)

    async def main() -> int:
        async with open_redis(redis) as client:
            queue = RedisJobQueue(client, redis)
            await queue.ensure_group()
            print(await queue.submit(request, args.job_id))
        return 0

    return anyio.run(main)


def _jobs(args: argparse.Namespace) -> int:
    _, redis = _load(args)
    if args.cancel and not args.job_id:
        raise InputError("--cancel: name the job to cancel (rillet jobs ID --cancel)")

    async def main() -> int:
        async with open_redis(redis) as client:
            events = RedisEventLog(client, redis)
            if args.cancel:
                lines = [await cancel_line(events, args.job_id, CANCEL_REASON)]
            elif args.job_id:
                lines = await job_lines(events, args.job_id)
            else:
                lines = await overview(client, events)
        print("\n".join(lines))
        return 0

    return anyio.run(main)


def _worker(args: argparse.Namespace) -> int:
    config, redis = _load(args)
    if args.concurrency < 1:
        print(f"rillet worker: --concurrency must be at least 1, got {args.concurrency}", file=sys.stderr)
        return 2
    if args.out_dir is not None:
        try:
            args.out_dir.mkdir(parents=True, exist_ok=True)  # fail before taking any job, not after paying
        except OSError as exc:
            raise ConfigError(f"--out-dir: cannot create {str(args.out_dir)!r}: {exc.strerror}") from exc
    settings = WorkerSettings(concurrency=args.concurrency, out_dir=args.out_dir, resume=config.resume)
    return anyio.run(run_worker, config, redis, settings, args.metrics_port)


async def run_worker(
    config: RunConfig, redis: RedisConfig, settings: WorkerSettings, metrics_port: int | None
) -> int:
    """Runs until SIGINT or SIGTERM; running jobs are left to be taken over after their lease."""
    metrics = ScaleMetrics()
    server = serve_metrics(metrics.registry, metrics_port) if metrics_port is not None else None
    if server is not None:
        sys.stderr.write(
            f"rillet worker: metrics on http://{server.address[0]}:{server.address[1]}/metrics\n"
        )
    try:
        async with open_redis(redis) as client, open_endpoint(config.api.base_url) as endpoint:
            queue = RedisJobQueue(client, redis)
            await queue.ensure_group()
            api = make_client(
                api_key=endpoint.api_key,
                base_url=endpoint.base_url,
                max_connections=max(config.api.max_connections, settings.concurrency),
                timeout=config.api.timeout,
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
            )
            # One write: worker processes sharing a pipe must not interleave their lines.
            sys.stderr.write(f"rillet worker {settings.consumer}: ready ({settings.concurrency} slots)\n")
            sys.stderr.flush()
            async with api, anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
                await worker.run()
    finally:
        if server is not None:
            server.close()
    return 0


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
