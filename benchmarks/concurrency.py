"""Many concurrent paced streams in one process: does the client keep up, and what does it cost?

The scenario of issue 19: N streams at once, each paced at ``--tokens-per-s`` (30, a model's pace)
for ``--tokens`` (340, its ``max_tokens``: a report is longer, so each gets exactly that),
through the default stages into a shared JSON-lines file sink and a Prometheus sink, against the
simulator in a process of its own. Each N runs twice, the phases in separate processes started
afresh (each warmed up by one short stream first), against the same simulator:

- ``sdk``: the baseline, the same streams iterated with the SDK's default client
  (``AsyncAnthropic(...).messages.create(stream=True)``) and nothing else;
- ``pipeline``: :class:`~pipeline.runner.Pipeline` with the default stages and the two sinks.

``--processes K`` spreads each phase's N streams over K processes (each prints its own row). All
processes start their streams at one agreed instant (``time.perf_counter``, CLOCK_MONOTONIC on
Linux, is shared by every process of the machine). Per process and phase:

- loop lag p99: how late a 20 ms timer fires (:mod:`pipeline.apps.bench.looplag`), sampled from the
  start to the last stream's end;
- CPU per API event (the row over all its processes): CPU time over that span divided by the SSE events the
  simulator wrote to its streams (its ``/_sim/requests`` truth);
- peak RSS (``ru_maxrss``, imports included);
- finished late by (median over streams): when the stream's end reached the caller, less its
  ideal end, the start instant + the TTFT + the tokens at the pace (no jitter; the first
  delta's few tokens make this ideal up to about 0.1 s late itself);
- text exact (pipeline): each stream's accumulated message text and its text in the JSONL file
  both equal the simulator's ``reference_text`` for its request.

The last lines give the pipeline/SDK ratio of CPU per event, the issue's 0.8 goal. Loopback only;
every process is bounded by ``--timeout``.

    .venv/bin/python benchmarks/concurrency.py [--n 250,500,1000] [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from anthropic import AsyncAnthropic
from prometheus_client import CollectorRegistry
from simulator_process import simulator_process

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.apps.bench.looplag import LoopLagSampler, peak_rss_bytes  # noqa: E402
from pipeline.apps.bench.stats import percentile  # noqa: E402
from pipeline.apps.simulator import SimulatorSettings, reference_text  # noqa: E402

MODEL = "claude-opus-4-7"
START_DELAY_S = 0.5
"""From every process being ready to their common start."""
WARM_UP_TOKENS = 8


def request_body(index: int, max_tokens: int) -> dict[str, Any]:
    """Stream ``index``'s request; a negative index is a process's warm-up, a few tokens long."""
    if index < 0:
        max_tokens = WARM_UP_TOKENS
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"Write report number {index}."}],
    }


# ---------------------------------------------------------------------------------------------
# One process of one phase


Streamer = Callable[[int], Awaitable[str | None]]
"""Runs the stream of one index to its end; the pipeline's gives the text it accumulated."""


@asynccontextmanager
async def _sdk(args: argparse.Namespace, count: int) -> AsyncIterator[Streamer]:
    client = AsyncAnthropic(base_url=args.url, api_key="sim", max_retries=0)

    async def one(index: int) -> None:
        stream = await client.messages.create(**request_body(index, args.tokens), stream=True)
        async for _ in stream:
            pass

    async with client:
        yield one


@asynccontextmanager
async def _pipeline(args: argparse.Namespace, count: int) -> AsyncIterator[Streamer]:
    from pipeline.apps.shared.build import build_stages
    from pipeline.client import make_client
    from pipeline.config import RunConfig
    from pipeline.runner import Pipeline
    from pipeline.sink import SinkSpec
    from sinks.file import FileSink
    from sinks.prometheus import PrometheusSink

    client = make_client(api_key="sim", base_url=args.url, max_connections=count + 16)
    sinks = [
        SinkSpec(FileSink(args.jsonl, mode="jsonl")),
        SinkSpec(PrometheusSink(address=None, registry=CollectorRegistry())),
    ]
    async with client, Pipeline(client, stages=build_stages(RunConfig()), sinks=sinks) as pipeline:

        async def one(index: int) -> str:
            result = await pipeline.run(request_body(index, args.tokens), stream_id=f"s{index}")
            message = result.message or {}
            return "".join(block.get("text", "") for block in message.get("content", ()))

        yield one


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """Warms up with one stream (the SDK imports and builds much on first use), says ``ready``,
    and starts its streams at the instant the coordinator then sends on stdin."""
    first, count = (int(part) for part in args.slice.split(":"))
    ends: dict[int, float] = {}
    texts: dict[int, str | None] = {}
    sampler = LoopLagSampler()
    async with (_sdk if args.worker == "sdk" else _pipeline)(args, count) as streamer:

        async def one(index: int) -> None:
            texts[index] = await streamer(index)
            ends[index] = time.perf_counter()

        await streamer(-1 - first)
        print("ready", flush=True)
        start_at = float(await anyio.to_thread.run_sync(sys.stdin.readline))
        await anyio.sleep(max(0.0, start_at - time.perf_counter()))
        cpu = time.process_time()
        with anyio.fail_after(args.timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sampler.run)
                async with anyio.create_task_group() as streams:
                    for index in range(first, first + count):
                        streams.start_soon(one, index)
                tg.cancel_scope.cancel()
        cpu = time.process_time() - cpu
    return {
        "start_at": start_at,
        "cpu_s": cpu,
        "lag_p99_s": percentile(sorted(sampler.samples), 99),
        "peak_rss": peak_rss_bytes(),
        "ends": ends,
        "texts": texts,
    }


# ---------------------------------------------------------------------------------------------
# The coordinator


def _run_phase(
    args: argparse.Namespace, phase: str, n: int, url: str, tmp: Path, seen: set[str]
) -> list[dict[str, Any]]:
    procs = []
    share, extra = divmod(n, args.processes)
    first = 0
    for k in range(args.processes):
        count = share + (1 if k < extra else 0)
        cmd = [sys.executable, __file__, "--worker", phase, "--url", url, "--slice", f"{first}:{count}"]
        cmd += ["--timeout", str(args.timeout), "--tokens", str(args.tokens)]
        cmd += ["--jsonl", str(tmp / f"{phase}-{n}-{k}.jsonl")]
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
        first += count
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"{phase} process {proc.pid} did not start")
        anyio.run(_sim_events, url, seen)  # the warm-ups' requests are not counted
        start_at = time.perf_counter() + START_DELAY_S
        results = []
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at!r}\n")
            proc.stdin.flush()
        for proc in procs:
            out, _ = proc.communicate(timeout=args.timeout + 60)
            if proc.returncode != 0:
                raise SystemExit(f"{phase} process exited with {proc.returncode}")
            results.append(json.loads(out.splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def _sim_events(url: str, seen: set[str]) -> tuple[int, int]:
    """SSE events and requests the simulator served since the ids in ``seen`` (which it extends)."""
    limiter = anyio.Semaphore(16)
    total = 0
    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        ids = [i for i in (await client.get("/_sim/requests")).json()["request_ids"] if i not in seen]
        seen.update(ids)

        async def fetch(request_id: str) -> None:
            nonlocal total
            async with limiter:
                truth = (await client.get(f"/_sim/requests/{request_id}")).json()
            total += len(truth["events"])

        async with anyio.create_task_group() as tg:
            for request_id in ids:
                tg.start_soon(fetch, request_id)
    return total, len(ids)


def _jsonl_texts(paths: list[Path]) -> dict[int, str]:
    parts: dict[int, list[str]] = defaultdict(list)
    for path in paths:
        with path.open(encoding="utf-8") as file:
            for line in file:
                if '"text_delta"' in line:
                    record = json.loads(line)
                    parts[int(record["stream_id"][1:])].append(record["event"]["delta"]["text"])
    return {index: "".join(chunks) for index, chunks in parts.items()}


def _report(args: argparse.Namespace, n: int, url: str, tmp: Path, seen: set[str]) -> None:
    settings = SimulatorSettings()
    ideal_s = args.ttft_ms / 1000 + args.tokens / args.tokens_per_s
    cpu_per_event: dict[str, float] = {}
    for phase in ("sdk", "pipeline"):
        results = _run_phase(args, phase, n, url, tmp, seen)
        events, requests = anyio.run(_sim_events, url, seen)
        cpu = sum(r["cpu_s"] for r in results)
        cpu_per_event[phase] = cpu / events
        late = [end - r["start_at"] - ideal_s for r in results for end in r["ends"].values()]
        ended = sum(len(r["ends"]) for r in results)
        line = (
            f"N={n:<5} {phase:<8} streams={ended}/{n} requests={requests} events={events} "
            f"cpu={cpu:.2f}s cpu_per_event={cpu_per_event[phase] * 1e6:.0f}us "
            f"late_median={statistics.median(late):.2f}s late_max={max(late):.2f}s"
        )
        if phase == "pipeline":
            reference = {i: reference_text(request_body(i, args.tokens), settings) for i in range(n)}
            in_file = _jsonl_texts(sorted(tmp.glob(f"pipeline-{n}-*.jsonl")))
            texts = {int(i): text for r in results for i, text in r["texts"].items()}
            exact = sum(texts.get(i) == reference[i] == in_file.get(i) for i in range(n))
            line += f" text_exact={exact}/{n}"
        print(line)
        for k, r in enumerate(results):
            print(
                f"    process {k}: streams={len(r['ends'])} loop_lag_p99={r['lag_p99_s'] * 1000:.0f}ms "
                f"peak_rss={r['peak_rss'] / 2**20:.0f}MiB cpu={r['cpu_s']:.2f}s"
            )
    print(f"N={n:<5} cpu_per_event pipeline/sdk = {cpu_per_event['pipeline'] / cpu_per_event['sdk']:.2f}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="250,500,1000", help="comma-separated stream counts")
    parser.add_argument("--processes", type=int, default=1, help="processes each phase's streams spread over")
    parser.add_argument("--tokens-per-s", type=float, default=30.0)
    parser.add_argument("--ttft-ms", type=float, default=500.0)
    parser.add_argument(
        "--tokens", type=int, default=340, help="each stream's max_tokens, all of which it gets"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="bound on each phase, seconds")
    parser.add_argument("--worker", choices=("sdk", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--slice", help=argparse.SUPPRESS)
    parser.add_argument("--jsonl", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(anyio.run(_worker, args)))
        return 0
    try:
        counts = [int(part) for part in args.n.split(",")]
    except ValueError:
        parser.error(f"--n: expected comma-separated integers, got {args.n!r}")
    if args.processes < 1 or any(n < args.processes for n in counts):
        parser.error("--processes: must be at least 1 and at most each --n")
    options = ("--ttft-ms", str(args.ttft_ms), "--tokens-per-s", str(args.tokens_per_s))
    with (
        simulator_process(*options) as (proc, url),
        tempfile.TemporaryDirectory(prefix="rillet-concurrency-") as tmp,
    ):
        print(
            f"simulator pid={proc.pid} tokens_per_s={args.tokens_per_s} tokens={args.tokens} "
            f"ttft_ms={args.ttft_ms} processes={args.processes} cpus={os.cpu_count()}"
        )
        seen: set[str] = set()
        for n in counts:
            _report(args, n, url, Path(tmp), seen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
