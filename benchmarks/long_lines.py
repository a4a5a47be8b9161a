"""Reading a recording is linear however long its lines are: per-byte cost of long lines against
normal events, in the same process.

Four recordings of about the same size are read with ``read_sse_events`` (the reader
``rillet replay`` uses) from a file:

- ``normal``: a message of many small text deltas, as the API streams it (the baseline);
- ``one data line``: the same message with all its text in one delta, one line of ``--mb`` MB;
- ``no line break``: ``--mb`` MB without a line break, refused at the default 16 MiB limit;
- ``no line break, limit raised``: the same with the limit above the file, refused at its end.

The reader used to re-join its pending bytes for every 64 KiB chunk: 26 s for 40 MB without a
line break. Each figure is the median of ``--runs``; the ratio is against ``normal``'s seconds per
byte (below 1: cheaper per byte than normal events).

    /work/venv/bin/python benchmarks/long_lines.py [--mb 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from pipeline.apps.run.sse_file import read_sse_events  # noqa: E402
from pipeline.errors import InputError  # noqa: E402

DELTA_TEXT = "The river bends here, and the bank gives way. "


def event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def message(deltas: list[str]) -> str:
    usage = {"output_tokens": 1}
    start = {"type": "message_start", "message": {"id": "msg_1", "content": [], "usage": usage}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    parts = [event("message_start", start), event("content_block_start", block)]
    for text in deltas:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        parts.append(event("content_block_delta", delta))
    parts.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    parts.append(event("message_stop", {"type": "message_stop"}))
    return "".join(parts)


def read_all(path: Path, max_line_bytes: int | None = None) -> Callable[[], str]:
    def run() -> str:
        try:
            options = {} if max_line_bytes is None else {"max_line_bytes": max_line_bytes}
            count = sum(1 for _ in read_sse_events(path, **options))
        except InputError as exc:
            return f"refused: {str(exc)[len(str(path)) :]}"
        return f"{count} events"

    return run


def median_seconds(run: Callable[[], str], runs: int) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        outcome = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=40, help="size of each recording in MB (default: 40)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "normal": message([DELTA_TEXT] * (size // (len(DELTA_TEXT) + 120))),
            "one data line": message([DELTA_TEXT * (size // len(DELTA_TEXT))]),
            "no line break": "x" * size,
        }
        paths = {}
        for name, text in files.items():
            paths[name] = Path(folder) / f"{name.replace(' ', '-')}.sse"
            paths[name].write_text(text, encoding="utf-8")
        raised = 2 * size
        cases = [
            ("normal", paths["normal"], read_all(paths["normal"])),
            ("one data line", paths["one data line"], read_all(paths["one data line"], raised)),
            ("no line break", paths["no line break"], read_all(paths["no line break"])),
            ("no line break, limit raised", paths["no line break"], read_all(paths["no line break"], raised)),
        ]
        baseline = 0.0
        print(f"{'recording':<28} {'MB':>6} {'seconds':>8} {'MB/s':>7} {'ratio':>6}  outcome")
        for name, path, run in cases:
            seconds, outcome = median_seconds(run, args.runs)
            megabytes = path.stat().st_size / 1e6
            per_byte = seconds / path.stat().st_size
            baseline = baseline or per_byte
            print(
                f"{name:<28} {megabytes:>6.1f} {seconds:>8.3f} {megabytes / seconds:>7.1f} "
                f"{per_byte / baseline:>6.2f}  {outcome}"
            )


if __name__ == "__main__":
    main()
