"""``rillet serve``: the browser view, until Ctrl+C or SIGTERM.

With ``--redis URL`` (or a ``[redis]`` section in the config) the server is a replica: jobs go to
the Redis queue for ``rillet worker`` processes, and every job's events are served from its log.

The access token comes from the environment (``RILLET_SERVE_TOKEN``) or a file, never from the
command line, where any local user could read it in the process list.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from pipeline.apps.scale import RedisConfig, ReplicaMetrics, read_scale_config, serve_metrics
from pipeline.apps.serve._replica import open_replica
from pipeline.apps.serve._server import open_server
from pipeline.apps.serve._settings import DEFAULT_MAX_KEPT_MIB, ServeSettings
from pipeline.apps.shared.build import build_service_sinks, build_stages, tracer_provider
from pipeline.apps.shared.endpoint import add_simulator_argument, open_endpoint, simulator_preset
from pipeline.apps.simulator import SimulatorSettings
from pipeline.client import make_client
from pipeline.config import RunConfig
from pipeline.errors import ConfigError
from pipeline.sink import SinkSpec
from pipeline.stages import StageFactory

TOKEN_ENV = "RILLET_SERVE_TOKEN"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        description="Serve a page and an SSE API that stream reports to browsers (loopback only by default).",
    )
    serve.add_argument("config", nargs="?", type=Path, help="a TOML file: request defaults, API, stages")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    serve.add_argument(
        "--token-file", type=Path, help=f"a file holding the access token (or set {TOKEN_ENV})"
    )
    serve.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME", help="another Host name to accept"
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a page origin allowed to call the API",
    )
    serve.add_argument(
        "--max-kept-mib",
        type=int,
        default=DEFAULT_MAX_KEPT_MIB,
        metavar="MIB",
        help=f"MiB kept streams' logs may hold; the oldest ended go first (default: {DEFAULT_MAX_KEPT_MIB})",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="serve jobs from this Redis as a replica (wins over the config's [redis] url)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics on this loopback port (0: a free one): the pipeline's metrics, or a replica's",
    )
    add_simulator_argument(serve)
    serve.set_defaults(func=run)


def read_token(path: Path | None) -> str | None:
    """The token from ``--token-file``, else the environment, else None."""
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {str(path)!r}: {exc.strerror}") from exc
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    config, redis = read_scale_config(args.config)
    if args.redis:
        redis = (redis or RedisConfig()).with_url(args.redis)
    if args.max_kept_mib < 1:
        raise ConfigError(f"--max-kept-mib must be at least 1, got {args.max_kept_mib}")
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        token=read_token(args.token_file),
        allowed_hosts=tuple(args.allow_host),
        cors_origins=tuple(args.cors_origin),
        model=config.request.model,
        max_tokens=config.request.max_tokens,
        max_kept_bytes=args.max_kept_mib << 20,
    )
    source = str(args.config or "the built-in config")
    if redis is not None:
        if "sinks" in config.model_fields_set:
            raise ConfigError(
                f"{source}: [[sinks]]: a replica (--redis) runs no model, so its sinks would receive "
                "nothing; give them to the workers (rillet worker)"
            )
        return anyio.run(replica_until_stopped, settings, redis, args.metrics_port)
    sinks = build_service_sinks(config, command="rillet serve", source=source, metrics_port=args.metrics_port)
    simulator = simulator_preset(args.simulator)
    return anyio.run(
        lambda: serve_until_stopped(
            settings, config, stages=build_stages(config), sinks=sinks, simulator=simulator
        )
    )


async def replica_until_stopped(settings: ServeSettings, redis: RedisConfig, metrics_port: int | None) -> int:
    """Serves jobs from Redis until SIGINT or SIGTERM; the jobs go on in their workers."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_replica(settings, redis) as replica:
            metrics = None
            if metrics_port is not None:
                registry = ReplicaMetrics(replica.streams.counts).registry
                metrics = serve_metrics(registry, metrics_port)
                host, port = metrics.address
                print(f"rillet serve: metrics on http://{host}:{port}/metrics", file=sys.stderr)
            try:
                link = _link(replica.url, settings)
                print(f"rillet serve: open {link} (a replica; Ctrl+C stops)", file=sys.stderr, flush=True)
                async for _ in signals:
                    break
            finally:
                if metrics is not None:
                    metrics.close()
    return 0


def _link(url: str, settings: ServeSettings) -> str:
    return f"{url}/?token={settings.token}" if settings.token else f"{url}/"


async def serve_until_stopped(
    settings: ServeSettings,
    config: RunConfig,
    *,
    stages: Sequence[StageFactory],
    sinks: Sequence[SinkSpec] = (),
    simulator: SimulatorSettings | None = None,
) -> int:
    """Serves until SIGINT or SIGTERM; running streams are then cancelled and every sink flushes.

    ``simulator``: the embedded simulator's settings when no API is configured."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_endpoint(config.api.base_url, simulator=simulator) as endpoint:
            settings = dataclasses.replace(settings, simulated=endpoint.simulated)
            client = make_client(
                api_key=endpoint.api_key,
                base_url=endpoint.base_url,
                max_connections=config.api.max_connections,
                timeout=config.api.timeout,
                tracer_provider=tracer_provider(sinks),
            )
            async with client, open_server(settings, client=client, stages=stages, sinks=sinks) as server:
                for spec in sinks:
                    address = getattr(spec.sink, "address", None)
                    if address is not None:
                        print(
                            f"rillet serve: metrics on http://{address[0]}:{address[1]}/metrics",
                            file=sys.stderr,
                        )
                print(
                    f"rillet serve: open {_link(server.url, settings)} (Ctrl+C stops)",
                    file=sys.stderr,
                    flush=True,
                )
                async for _ in signals:
                    break
    return 0
