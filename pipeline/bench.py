"""Deprecated: the benchmark lives in :mod:`pipeline.apps.bench`; this path goes in the next release."""

import sys

from pipeline.deprecated import forward, run_moved

__getattr__ = forward("pipeline.bench", "pipeline.apps.bench")

if __name__ == "__main__":
    run_moved("pipeline.bench", "rillet bench")
    from pipeline.apps.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
