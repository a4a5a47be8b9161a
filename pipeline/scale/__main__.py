"""``python -m pipeline.scale submit|worker|jobs``: the same commands as ``rillet submit|worker|jobs``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipeline import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
