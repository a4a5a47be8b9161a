"""How long a ``rillet`` command takes to start, against importing the SDK alone, in the same run.

Each command runs ``--repeat`` times in a fresh interpreter, the commands interleaved so that a
busy machine slows them alike; prints each one's median and best wall time, and ``rillet --help``
as a fraction of ``import anthropic``. Run: ``python benchmarks/startup.py``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

RILLET = str(Path(sys.executable).with_name("rillet"))
COMMANDS = {
    "rillet --help": [RILLET, "--help"],
    "rillet jobs --help": [RILLET, "jobs", "--help"],
    "rillet run --help": [RILLET, "run", "--help"],
    "python -c 'import anthropic'": [sys.executable, "-c", "import anthropic"],
}
BASELINE = "python -c 'import anthropic'"


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9, help="runs of each command (default: 9)")
    args = parser.parse_args()
    for argv in COMMANDS.values():
        timed(argv)  # warm the file cache and the bytecode
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            times[name].append(timed(argv))
    width = max(map(len, COMMANDS))
    print(f"{'command':<{width}}  median s  best s")
    for name, runs in times.items():
        print(f"{name:<{width}}  {statistics.median(runs):8.3f}  {min(runs):6.3f}")
    ratio = statistics.median(times["rillet --help"]) / statistics.median(times[BASELINE])
    print(f"rillet --help / import anthropic (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
