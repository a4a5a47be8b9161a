"""``rillet simulate``: serve the simulator standalone until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys

import anyio

from ._scenarios import SCENARIO_NAMES
from ._server import open_simulator
from ._settings import SimulatorSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` options, shared by ``rillet simulate`` and ``python -m pipeline.apps.simulator``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (default: 8765)")
    parser.add_argument("--scenario", choices=SCENARIO_NAMES, default="report", help="default scenario")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="request receipt to first content delta")
    parser.add_argument(
        "--tokens-per-s", type=float, default=0.0, help="output rate; 0 = as fast as possible"
    )
    parser.add_argument("--jitter", type=float, default=0.0, help="seeded timing jitter, 0 to <1")
    parser.add_argument("--seed", type=int, default=0, help="mixed into every text seed")
    parser.add_argument("--drop-after", type=int, default=None, help="events sent before a drop or error")
    parser.add_argument(
        "--drop-continuations", action="store_true", help="let faults hit resume requests too"
    )
    parser.add_argument("--fail-first", type=int, default=None, help="fault only the first N tries of a body")
    parser.add_argument("--report-tokens", type=int, default=None, help="natural report length in tokens")


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    return SimulatorSettings(
        scenario=args.scenario,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        jitter=args.jitter,
        seed=args.seed,
        drop_after=args.drop_after,
        drop_continuations=args.drop_continuations,
        fail_first=args.fail_first,
        report_tokens=args.report_tokens,
    )


async def _serve(settings: SimulatorSettings, host: str, port: int) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_simulator(settings, host=host, port=port) as sim:
            print(
                f"rillet simulator listening on {sim.base_url} (scenario {settings.scenario})",
                file=sys.stderr,
            )
            sys.stderr.flush()
            async for _ in signals:
                return


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on a clean stop, 2 on bad settings."""
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"rillet simulate: {exc}", file=sys.stderr)
        return 2
    anyio.run(_serve, settings, args.host, args.port)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand; its ``func`` runs the server."""
    parser = subparsers.add_parser(
        "simulate",
        description="Serve a deterministic stand-in for the Messages API (POST /v1/messages) on loopback.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.apps.simulator", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
