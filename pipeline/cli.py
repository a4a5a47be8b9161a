"""The ``rillet`` command: one subcommand per application, each registered by its own module.

A user's mistake (bad config, malformed input) ends with one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from collections.abc import Sequence

from pipeline.bench import cli as bench_cli
from pipeline.errors import ConfigError, InputError, RilletError
from pipeline.jobs import cli as jobs_cli
from pipeline.scale import cli as scale_cli
from pipeline.serve import cli as serve_cli
from pipeline.simulator import cli as simulator_cli

USAGE_ERROR = 2
SIGPIPE_STATUS = 128 + signal.SIGPIPE
"""What a shell reports for a tool killed by SIGPIPE, which Python ignores and raises instead."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rillet", description="Stream Claude's Messages API through stages into sinks."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    jobs_cli.register(commands)
    bench_cli.register(commands)
    serve_cli.register(commands)
    scale_cli.register(commands)
    simulator_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    gc.freeze()  # what start-up built lives all run: keep the collector's full passes off it
    try:
        status: int = args.func(args)
    except RilletError as exc:
        return _report(exc)
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        sole = _sole(exc)
        if isinstance(sole, RilletError):  # raised inside a task group, such as a server's
            return _report(sole)
        if not _only_broken_pipes(exc):
            raise
        # The reader left (`rillet jobs | head`): what it took was written; exit as a C tool would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout at exit
        return SIGPIPE_STATUS
    return status


def _report(error: RilletError) -> int:
    print(f"rillet: error: {error}", file=sys.stderr)
    return USAGE_ERROR if isinstance(error, ConfigError | InputError) else 1


def _sole(exc: BaseException) -> BaseException:
    """The one exception inside nested groups of one, or the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _only_broken_pipes(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_broken_pipes(inner) for inner in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


if __name__ == "__main__":
    sys.exit(main())
