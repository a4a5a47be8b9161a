"""How far rillet's TTFT is from the truth: client TTFT − server TTFT, at concurrency 1 and 256.

Starts ``python -m pipeline.apps.simulator`` in its own process (so the server never competes with the
client for its event loop) with a fixed TTFT, runs ``rillet bench`` against it in this process
with the truth check on, and prints ``ttft_error_ms p50=X p99=Y`` per concurrency, with the split
into the send side (clock zero, the request's first byte sent → its arrival at the server's
socket) and the receive side (server write → the arrival of the chunk that completed the first
delta at the client's socket), and the SDK's request building kept out of TTFT (``ttft_from_call``
adds it back). Arrivals are the kernel's stamps (:mod:`pipeline.wire.stamps`); both processes convert
them to ``perf_counter_ns`` (CLOCK_MONOTONIC, one clock machine-wide).

    /work/venv/bin/python benchmarks/ttft_accuracy.py [--ttft-ms 200] [--concurrency 1,256]
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from simulator_process import simulator_process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.apps.bench import BenchConfig, run_bench  # noqa: E402


def describe(r: dict[str, Any]) -> str:
    """The headline figures of one point, on one line."""
    return (
        f"ttft_error_ms p50={r['median_ttft_error_ms']:.2f} p99={r['p99_ttft_error_ms']:.2f} "
        f"(send p50={r['median_ttft_error_send_ms']:.2f} p99={r['p99_ttft_error_send_ms']:.2f}; "
        f"receive p50={r['median_ttft_error_receive_ms']:.2f} p99={r['p99_ttft_error_receive_ms']:.2f}) "
        f"· SDK call to socket (not in TTFT) p50={r['median_request_build_ms']:.2f} "
        f"p99={r['p99_request_build_ms']:.2f}; ttft_from_call p50={r['median_ttft_from_call_ms']:.2f} "
        f"· {r['completed']} requests, server peak concurrency {r['server_max_concurrent_requests']}, "
        f"lost deltas {r['lost_deltas']}, loop lag p99={r['p99_loop_lag_ms']:.2f} ms, "
        f"client RSS {r['client_peak_rss_bytes'] / 2**20:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ttft-ms", type=float, default=200.0)
    parser.add_argument("--tokens-per-s", type=float, default=20.0)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,256")
    parser.add_argument(
        "--rounds", type=int, default=3, help="requests per slot (at least 100 at concurrency 1)"
    )
    parser.add_argument("--workers", type=int, default=1, help="client processes (each its own event loop)")
    args = parser.parse_args()
    os.environ.setdefault("ANTHROPIC_API_KEY", "rillet-simulator")
    with simulator_process("--ttft-ms", str(args.ttft_ms), "--tokens-per-s", str(args.tokens_per_s)) as (
        _,
        url,
    ):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            settings = BenchConfig(
                concurrency=[concurrency],
                num_requests=max(100, concurrency * args.rounds),
                output_tokens=args.output_tokens,
                truth=True,
                workers=args.workers,
                progress="off",
            )
            quiet = functools.partial(run_bench, base_url=url, out=io.StringIO(), err=io.StringIO())
            report = anyio.run(quiet, settings)
            print(f"concurrency {concurrency}: {describe(report.results[0])}")


if __name__ == "__main__":
    main()
