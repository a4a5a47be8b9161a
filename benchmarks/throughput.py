"""Throughput: the full pipeline against the SDK's own ``messages.stream()`` helper, same bytes.

One long stream (at least 20,000 deltas) is recorded once from the simulator, then served from
memory through ``httpx2.MockTransport``, so both sides pay the same SDK parsing and nothing else
varies. Runs alternate (a, b, a, b, ...) to share the machine's noise; the last lines are the median
ratios, of wall-clock time and of the process's CPU time (every thread's, so the file sink's writes
count too). Objects alive after start-up are frozen out of the garbage collector (``gc.freeze()``) for
both sides alike, as the ``rillet`` command does.

    python benchmarks/throughput.py [--runs 7] [--max-tokens 8000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from anthropic import AsyncAnthropic

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.config import (
    AccumulateStageConfig,
    CostStageConfig,
    FilterStageConfig,
    LatencyStageConfig,
    RepetitionStageConfig,
)
from pipeline.runner import Pipeline
from pipeline.sink import SinkSpec
from pipeline.stages import StageFactory
from sinks.file import FileSink
from sinks.stdout import StdoutSink

MODEL = "claude-sonnet-4-6"
MIN_DELTAS = 20_000


def request(max_tokens: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "A very long report on rivers."}],
    }


async def record(max_tokens: int) -> bytes:
    """The raw SSE body of one long simulator response."""
    async with open_simulator(SimulatorSettings()) as sim, httpx2.AsyncClient() as http:
        response = await http.post(
            f"{sim.base_url}/v1/messages",
            json={**request(max_tokens), "stream": True},
            headers={"x-api-key": "bench", "anthropic-version": "2023-06-01"},
            timeout=120,
        )
        return response.content


def lengthen(body: bytes, deltas: int) -> bytes:
    """Repeats the text deltas of one report until the stream has ``deltas`` of them.

    A simulated report ends at its natural length, a few thousand deltas; repeating the whole run of
    deltas keeps every event byte-exact while the repeat's period (the whole report) stays far beyond
    the repetition detector's window, as in real long text.
    """
    events = body.split(b"\n\n")
    text = [i for i, event in enumerate(events) if b'"text_delta"' in event]
    first, last = text[0], text[-1] + 1
    run = events[first:last]
    copies = -(-deltas // len(run))
    return b"\n\n".join(events[:first] + run * copies + events[last:])


def client_for(body: bytes) -> AsyncAnthropic:
    def answer(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream", "request-id": "req_bench"}, content=body
        )

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    return AsyncAnthropic(api_key="bench", base_url="http://bench.invalid", max_retries=0, http_client=http)


class Timer:
    """Wall-clock and CPU time from its start to its stop."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.wall, self.cpu = -time.perf_counter(), -time.process_time()

    def stop(self) -> Timer:
        self.wall += time.perf_counter()
        self.cpu += time.process_time()
        return self


async def sdk_helper(body: bytes, max_tokens: int) -> tuple[Timer, str]:
    """The helper's time, and the text of its final message."""
    timer = Timer()
    async with client_for(body) as client:
        timer.start()
        async with client.messages.stream(**request(max_tokens)) as stream:  # type: ignore[arg-type]
            async for _ in stream:
                pass
            message = await stream.get_final_message()
        timer.stop()
    return timer, "".join(block.text for block in message.content if block.type == "text")


def default_stages() -> list[StageFactory]:
    """What ``rillet run`` chains by default (thinking filtered out)."""
    return [
        FilterStageConfig(type="filter", exclude=["thinking_delta"]).factory(),
        AccumulateStageConfig(type="accumulate").factory(),
        RepetitionStageConfig(type="repetition").factory(),
        CostStageConfig(type="cost").factory(),
        LatencyStageConfig(type="latency").factory(),
    ]


async def full_pipeline(body: bytes, max_tokens: int, folder: Path) -> tuple[Timer, str]:
    """The pipeline's time, and the text of the message it accumulated."""
    stages = default_stages()
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 (opening /dev/null does not block)
        sinks = [
            SinkSpec(FileSink(folder / "report.md", mode="text")),
            SinkSpec(StdoutSink(stream=devnull, err=devnull)),
        ]
        timer = Timer()
        async with client_for(body) as client:
            timer.start()
            async with Pipeline(client, stages=stages, sinks=sinks) as pipeline:
                result = await pipeline.run(request(max_tokens))
            timer.stop()
    if result.outcome != "completed":
        raise SystemExit(f"the pipeline run did not complete: {result.outcome} {result.error}")
    content = (result.message or {}).get("content", [])
    return timer, "".join(block["text"] for block in content if block["type"] == "text")


async def main(runs: int, max_tokens: int) -> None:
    body = lengthen(await record(max_tokens), MIN_DELTAS)
    gc.freeze()  # as `rillet` does at start-up: both sides run with start-up objects out of the GC's way
    deltas = body.count(b"event: content_block_delta")
    print(f"stream: {len(body):,} bytes, {deltas:,} deltas")
    ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory() as folder:
        _, expected = await sdk_helper(body, max_tokens)
        _, text = await full_pipeline(body, max_tokens, Path(folder))
        if text != expected:  # the warm-up runs check that the pipeline is faster by being right
            raise SystemExit("the pipeline's message text differs from the SDK's final message")
        for run in range(1, runs + 1):
            a, _ = await sdk_helper(body, max_tokens)
            b, _ = await full_pipeline(body, max_tokens, Path(folder))
            ratios.append(b.wall / a.wall)
            cpu_ratios.append(b.cpu / a.cpu)
            print(
                f"run {run}: sdk_helper {a.wall * 1e6 / deltas:.1f} µs/delta, "
                f"pipeline {b.wall * 1e6 / deltas:.1f} µs/delta, ratio {b.wall / a.wall:.2f}, "
                f"CPU ratio {b.cpu / a.cpu:.2f}"
            )
    print(f"ratio pipeline/sdk_helper = {statistics.median(ratios):.2f}")
    print(f"CPU-time ratio pipeline/sdk_helper = {statistics.median(cpu_ratios):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=8_000)
    args = parser.parse_args()
    anyio.run(main, args.runs, args.max_tokens)
