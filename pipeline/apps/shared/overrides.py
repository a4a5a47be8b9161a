"""The report options ``rillet run``, ``submit`` and ``worker`` share, laid over a run's config file."""

from __future__ import annotations

import argparse

from pipeline.config import RunConfig


def with_overrides(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """Command-line options win over the file; the file wins over built-in defaults."""
    request: dict[str, object] = {}
    if args.prompt is not None:
        request |= {"prompt": args.prompt, "prompt_file": None}
    if args.prompt_file is not None:
        request |= {"prompt": None, "prompt_file": args.prompt_file.resolve()}
    if args.model is not None:
        request["model"] = args.model
    if args.max_tokens is not None:
        request["max_tokens"] = args.max_tokens
    config = config.with_request(**request)
    if args.out is not None:
        config = config.with_report_path(args.out)
    return config
