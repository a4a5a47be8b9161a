"""What wire stamps cost the client: CPU per event, the SDK's own transport against rillet's.

One long stream (several thousand deltas, as fast as the simulator writes them) is read through
the SDK's raw event stream three ways: the SDK's default httpx2 transport (``sdk``), rillet's
:class:`~pipeline.wire.transport.WireTransport` read in the loop (``wire``, what
``make_client(wire=True)`` gives), and the same read by the :mod:`pipeline.wire.reader` thread
(``wire+thread``, what ``rillet bench`` uses). The simulator runs in its own process; CPU is the
client process's ``time.process_time`` (every thread). Runs alternate to share the machine's noise;
the ratios are medians against ``sdk``.

    python benchmarks/wire_overhead.py [--runs 7] [--max-tokens 8000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ttft_accuracy import start_simulator  # noqa: E402

from pipeline.client import make_client  # noqa: E402
from pipeline.wire.reader import WireReader  # noqa: E402

Variant = Callable[[str], AsyncAnthropic]


def sdk(base_url: str) -> AsyncAnthropic:
    return AsyncAnthropic(
        api_key="bench", base_url=base_url, max_retries=0, http_client=DefaultAsyncHttpxClient()
    )


def wire(base_url: str) -> AsyncAnthropic:
    return make_client(api_key="bench", base_url=base_url, max_connections=1, wire=True)


READER = WireReader()


def wire_thread(base_url: str) -> AsyncAnthropic:
    return make_client(api_key="bench", base_url=base_url, max_connections=1, wire_reader=READER)


VARIANTS: dict[str, Variant] = {"sdk": sdk, "wire": wire, "wire+thread": wire_thread}


async def cpu_per_event(make: Variant, base_url: str, max_tokens: int) -> float:
    """Client CPU seconds per event for one whole stream."""
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "A very long report on rivers."}],
    }
    async with make(base_url) as client:
        started = time.process_time()
        events = 0
        async with await client.messages.create(**request, stream=True) as stream:
            async for _ in stream:
                events += 1
        return (time.process_time() - started) / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=8000)
    args = parser.parse_args()
    process, base_url = start_simulator(0, 0)
    try:
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for run in range(args.runs):
            for name, make in VARIANTS.items():
                samples[name].append(anyio.run(cpu_per_event, make, base_url, args.max_tokens))
            shown = ", ".join(f"{name} {values[-1] * 1e6:.1f} µs/event" for name, values in samples.items())
            print(f"run {run + 1}: {shown}")
        base = statistics.median(samples["sdk"])
        for name in ("wire", "wire+thread"):
            ratio = statistics.median(a / b for a, b in zip(samples[name], samples["sdk"], strict=True))
            print(f"ratio {name}/sdk = {ratio:.2f} (sdk median {base * 1e6:.1f} µs/event)")
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
