"""Deprecated: the simulator lives in :mod:`pipeline.apps.simulator`; this path goes in the next release."""

import sys

from pipeline.deprecated import forward, run_moved

__getattr__ = forward("pipeline.simulator", "pipeline.apps.simulator")

if __name__ == "__main__":
    run_moved("pipeline.simulator", "rillet simulate")
    from pipeline.apps.simulator.cli import main

    sys.exit(main())
