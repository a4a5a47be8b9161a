"""``rillet run`` and ``rillet replay``: argument parsing, then the job."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from pipeline.apps.shared import interrupts
from pipeline.apps.shared.endpoint import add_simulator_argument
from pipeline.apps.shared.overrides import with_overrides
from pipeline.config import load_config


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run")
    run.add_argument("config", nargs="?", type=Path, help="a TOML file such as config/report.toml")
    prompt = run.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="the prompt text")
    prompt.add_argument("--prompt-file", type=Path, help="a file holding the prompt")
    run.add_argument("--model", help="the model to ask (default: the config's, else claude-sonnet-4-6)")
    run.add_argument("--max-tokens", type=int, help="the output token budget")
    run.add_argument("--out", type=Path, help="where the report goes (the file sink's path)")
    run.add_argument("--verbose", action="store_true", help="print stream metadata on stderr")
    add_simulator_argument(run)
    run.set_defaults(func=_run)

    rep = commands.add_parser("replay")
    rep.add_argument("file", type=Path, help="a recorded stream: event:/data: lines, as the API sends them")
    rep.add_argument("--config", type=Path, help="stages and sinks to run it through")
    rep.add_argument("--final-json", type=Path, help="write the accumulated message here (default: stdout)")
    rep.add_argument(
        "--max-line-bytes",
        type=_positive,
        help="refuse a recording with a longer line (default: 16777216, 16 MiB)",
    )
    rep.set_defaults(func=_replay)


def _run(args: argparse.Namespace) -> int:
    # Here, not at the top: it loads the SDK, which `rillet submit` (sharing these options) never needs.
    from pipeline.apps.run.report import run_report

    config = with_overrides(load_config(args.config), args)
    interrupts.start_run()
    return anyio.run(lambda: run_report(config, verbose=args.verbose, simulator=args.simulator))


def _replay(args: argparse.Namespace) -> int:
    from pipeline.apps.run.replay import replay
    from pipeline.apps.run.sse_file import MAX_LINE_BYTES  # with the SDK: not at start-up

    config = load_config(args.config) if args.config else None
    limit: int = args.max_line_bytes or MAX_LINE_BYTES
    return anyio.run(replay, args.file, config, args.final_json, limit)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
