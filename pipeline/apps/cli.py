"""The ``rillet`` command: one subcommand per application, each registered by its own module.

A user's mistake (bad config, malformed input) ends with one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NamedTuple

from pipeline.apps.shared import interrupts
from pipeline.errors import ConfigError, InputError, RilletError

USAGE_ERROR = 2
SIGPIPE_STATUS = 128 + signal.SIGPIPE
"""What a shell reports for a tool killed by SIGPIPE, which Python ignores and raises instead."""


class Command(NamedTuple):
    """A subcommand: the module whose ``register`` adds it (with its siblings), and its one-line help."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "run": Command("pipeline.apps.run.cli", "stream a report to the terminal and a file"),
    "replay": Command("pipeline.apps.run.cli", "run a recorded SSE stream through the pipeline, offline"),
    "bench": Command(
        "pipeline.apps.bench.cli", "benchmark streaming latency and throughput (TTFT, ITL, TPOT, E2E)"
    ),
    "serve": Command("pipeline.apps.serve.cli", "watch reports being written, in a browser"),
    "submit": Command("pipeline.apps.scale.cli", "enqueue a report job in Redis and print its id"),
    "worker": Command("pipeline.apps.scale.cli", "run report jobs from Redis until stopped"),
    "jobs": Command("pipeline.apps.scale.cli", "show queued, running and finished jobs"),
    "simulate": Command("pipeline.apps.simulator.cli", "serve a local Messages API simulator"),
}
"""Every subcommand. Only the module of the one being run is imported: ``rillet --help`` or
``rillet jobs`` must not pay for the SDK, the web server or matplotlib (seconds on a cold cache)."""


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, with the options of the command ``argv`` names; the others are listed only."""
    parser = argparse.ArgumentParser(
        prog="rillet", description="Stream Claude's Messages API through stages into sinks."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = COMMANDS[argv[0]].module if argv and argv[0] in COMMANDS else None
    if chosen is not None:
        importlib.import_module(chosen).register(commands)  # the command and its siblings, with options
    for name, command in COMMANDS.items():
        if command.module != chosen:
            commands.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    if argv is None:  # the command itself, not a caller embedding it: Ctrl+C is ours from now on
        interrupts.install()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
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
