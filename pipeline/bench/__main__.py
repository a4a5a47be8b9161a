"""``python -m pipeline.bench``: ``rillet bench`` without the console script."""

import sys

from pipeline.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
