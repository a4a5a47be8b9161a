"""``rillet submit``, ``rillet worker`` and ``rillet jobs``: argument parsing, then Redis.

Redis unreachable at start is a :class:`ConfigError` (one line, exit status 2, from the CLI's
main); Redis lost later is ridden out with backoff (:mod:`pipeline.apps.scale._retry`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from pipeline.apps.scale._redis import RedisEventLog, RedisJobQueue, open_redis
from pipeline.apps.scale.checks import JOB_ID_PATTERN, job_id_problem
from pipeline.apps.scale.settings import RedisConfig, load_scale_config
from pipeline.apps.scale.status import cancel_line, job_lines, overview
from pipeline.apps.shared.build import build_request
from pipeline.apps.shared.overrides import with_overrides
from pipeline.config import RunConfig
from pipeline.errors import ConfigError, InputError

CANCEL_REASON = "cancelled with rillet jobs --cancel"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser("submit")
    _common(submit)
    prompt = submit.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="the prompt text")
    prompt.add_argument("--prompt-file", type=Path, help="a file holding the prompt")
    submit.add_argument("--model", help="the model to ask (default: the config's)")
    submit.add_argument("--max-tokens", type=int, help="the output token budget")
    submit.add_argument(
        "--id", dest="job_id", help=f"the job id, matching {JOB_ID_PATTERN} (default: a random one)"
    )
    submit.set_defaults(func=_submit)

    worker = commands.add_parser("worker")
    _common(worker)
    worker.add_argument("--concurrency", type=int, default=4, help="jobs run at once (default: 4)")
    worker.add_argument("--out-dir", type=Path, help="write each finished report here as <id>.md")
    worker.add_argument("--metrics-port", type=int, help="serve /metrics on this port (0: a free one)")
    worker.set_defaults(func=_worker)

    jobs = commands.add_parser("jobs")
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
    if args.job_id is not None and (problem := job_id_problem(args.job_id)) is not None:
        raise InputError(f"--id: {problem}")
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
    from pipeline.apps.scale.metrics import ScaleMetrics
    from pipeline.apps.scale.run import run_worker
    from pipeline.apps.scale.worker import WorkerSettings
    from pipeline.apps.shared.build import build_service_sinks

    settings = WorkerSettings(concurrency=args.concurrency, out_dir=args.out_dir, resume=config.resume)
    metrics = ScaleMetrics()
    sinks = build_service_sinks(
        config,
        command="rillet worker",
        source=str(args.config or "the built-in config"),
        metrics_port=args.metrics_port,
        registry=metrics.registry,
    )
    return anyio.run(run_worker, config, redis, settings, metrics, sinks)
