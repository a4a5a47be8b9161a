"""``python -m pipeline.scale submit|worker|jobs``: the scale-out commands until ``rillet`` wires them."""

from __future__ import annotations

import argparse
import sys

from pipeline.errors import ConfigError, InputError, RilletError
from pipeline.scale import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.scale")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli.register(commands)
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except (ConfigError, InputError) as exc:
        print(f"rillet: error: {exc}", file=sys.stderr)
        return 2
    except RilletError as exc:
        print(f"rillet: error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
