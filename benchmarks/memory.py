"""Memory per delta: RSS growth and time per delta over one 200,000-delta stream through the pipeline.

What a stream keeps while it runs must grow with its text, not with its number of events: a long
report is hundreds of thousands of deltas, and an object per delta kept twice (once by the
accumulator, once by the stitcher's transcript) costs six times the text. The stream is a simulator
report made long (:func:`throughput.lengthen`), served from memory in socket-sized chunks, with
the same stages and sinks. A probe stage at the chain's end stamps the time and the resident set
at each quarter of the deltas; the growth after the first quarter is what the stream keeps (the
first quarter also pays the allocator's warm-up), and flat time per delta means no step costs
more as the text grows.

    python benchmarks/memory.py [--deltas 200000]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import httpx2
from anthropic import AsyncAnthropic
from throughput import default_stages, lengthen, record, request

from pipeline.events import Item
from pipeline.runner import Pipeline
from pipeline.sink import SinkSpec
from pipeline.stages import StreamContext
from sinks.file import FileSink
from sinks.stdout import StdoutSink

MAX_TOKENS = 8_000
CHUNK = 16_384
"""Bytes per body read, as a socket delivers them: a body handed over whole would be split into
lines all at once, and their release as the stream advances would hide what the pipeline keeps."""
PAGE = resource.getpagesize()


def rss_bytes() -> int:
    """The resident set now (Linux's ``/proc/self/statm``), not the peak ``getrusage`` reports."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def client_for(body: bytes) -> AsyncAnthropic:
    """A client whose every response streams ``body`` in socket-sized chunks, from memory."""

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), CHUNK):
            yield body[start : start + CHUNK]

    def answer(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    return AsyncAnthropic(api_key="bench", base_url="http://bench.invalid", max_retries=0, http_client=http)


class Probe:
    """The last stage: (deltas seen, ``perf_counter_ns``, RSS) at the first delta and each quarter."""

    def __init__(self, deltas: int) -> None:
        self.marks = {1, *(deltas * q // 4 for q in (1, 2, 3, 4))}
        self.seen = 0
        self.stamps: list[tuple[int, int, int]] = []

    def factory(self, ctx: StreamContext) -> Probe:
        return self

    def process(self, item: Item) -> Sequence[Item]:
        if item.event.type == "content_block_delta":
            self.seen += 1
            if self.seen in self.marks:
                self.stamps.append((self.seen, time.perf_counter_ns(), rss_bytes()))
        return (item,)

    def finish(self) -> Sequence[Item]:
        return ()


async def run(body: bytes, deltas: int, folder: Path) -> tuple[Probe, int]:
    """The probe's stamps, and the characters of text the stream carried."""
    probe = Probe(deltas)
    stages = [*default_stages(), probe.factory]
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 (opening /dev/null does not block)
        sinks = [
            SinkSpec(FileSink(folder / "report.md", mode="text")),
            SinkSpec(StdoutSink(stream=devnull, err=devnull)),
        ]
        async with client_for(body) as client, Pipeline(client, stages=stages, sinks=sinks) as pipeline:
            result = await pipeline.run(request(MAX_TOKENS))
    if result.outcome != "completed":
        raise SystemExit(f"the pipeline run did not complete: {result.outcome} {result.error}")
    assert result.message is not None
    return probe, sum(len(block.get("text", "")) for block in result.message["content"])


async def main(deltas: int) -> None:
    body = lengthen(await record(MAX_TOKENS), deltas)
    deltas = body.count(b"event: content_block_delta")
    print(f"stream: {len(body):,} bytes, {deltas:,} deltas")
    gc.freeze()  # as `rillet` does at start-up
    with tempfile.TemporaryDirectory() as folder:
        probe, chars = await run(body, deltas, Path(folder))
    print(f"text: {chars / deltas:.1f} characters per delta")
    (n0, t0, rss0), (n1, t1, rss1), _, (n3, t3, _), (n4, t4, rss4) = probe.stamps
    first, last = (t1 - t0) / 1e3 / (n1 - n0), (t4 - t3) / 1e3 / (n4 - n3)
    print(f"time per delta: first quarter {first:.2f} µs, last quarter {last:.2f} µs")
    print(f"RSS growth per delta after the first quarter: {(rss4 - rss1) / (n4 - n1):.1f} B")
    print(f"RSS growth per delta over the whole stream: {(rss4 - rss0) / (n4 - n0):.1f} B")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=200_000)
    args = parser.parse_args()
    anyio.run(main, args.deltas)
