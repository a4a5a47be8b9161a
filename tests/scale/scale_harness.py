"""Real processes on loopback for the scale-out tests and benchmarks: redis-server, workers, billing.

Everything here starts a subprocess it owns and ends it by its pid; waits are bounded polls of
Redis (an external process cannot signal an anyio event).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from pipeline.apps.scale import RedisEventLog
from pipeline.apps.scale._redis import ENDED
from pipeline.apps.scale.frames import accumulate, fold
from pipeline.apps.simulator import SimulatorSettings, count_tokens, reference_plan
from pipeline.apps.simulator._events import iter_events
from pipeline.apps.simulator._plan import build_plan
from pipeline.apps.simulator._scenarios import SCENARIOS
from pipeline.apps.simulator._validation import parse_request
from pipeline.source._budget import counted_text, remaining
from pipeline.source._stitch import Stitcher
from pipeline.source.resume import PrefillSupport, ResumeSettings, plan_resume
from pipeline.source.stream import CONTINUED
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL = "claude-haiku-4-5"
"""Accepts prefill, so a takeover resumes with the exact continuation (nothing restated)."""


@dataclass
class RedisServer:
    """``redis-server`` with AOF in a directory of its own, on a free loopback port."""

    directory: Path
    appendfsync: str = "everysec"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += [
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self, aof_bytes: int | None = None) -> float:
        """``kill -9``, then the same server again (port, directory, AOF); seconds until it answers.

        ``aof_bytes`` first cuts the AOF back to that size (:meth:`aof_size` earlier): the writes
        after it are lost as by a machine crash before their fsync, or a failover to a lagging replica.
        """
        self.kill()
        if aof_bytes is not None:
            os.truncate(self._incremental_aof(), aof_bytes)
        started = time.perf_counter()
        self.start()
        return time.perf_counter() - started

    def aof_size(self) -> int:
        return self._incremental_aof().stat().st_size

    def _incremental_aof(self) -> Path:
        return max((self.directory / "appendonlydir").glob("*.incr.aof"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def write_config(path: Path, redis_url: str, resume: dict[str, Any] | None = None, **redis: Any) -> Path:
    """A worker config: the prefill-capable model, the default stages, ``[redis]`` and ``[resume]``."""
    lines = ["[request]", f'model = "{MODEL}"', "max_tokens = 4000", "", "[redis]", f'url = "{redis_url}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in redis.items()]
    lines += ["", "[resume]", *(f"{key} = {json.dumps(value)}" for key, value in (resume or {}).items())]
    path.write_text("\n".join(lines) + "\n")
    return path


_ZYGOTE = """
import os, signal, sys
import pipeline.apps.scale.cli, pipeline.apps.scale.run  # all that a worker imports, before the forks
from pipeline.apps.cli import main

signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.stdin.close()
        code = main(line.split())
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
"""


READY = re.compile(r"rillet worker (\S+-\d+-[0-9a-f]+): ready \(")
"""A worker's ready line, which names its consumer: ``<host>-<pid>-<hex>``."""


class Workers:
    """Forks ``rillet worker`` processes from one that has imported everything already.

    A worker costs about 2 s of CPU to import on this machine; forked from a warm parent it is ready
    at once, so a test can kill twenty of them in seconds. Each is a ``python -m pipeline.apps
    worker`` in all but the exec; every one is signalled through a pidfd taken when it starts, so a
    pid the system has reused since is never hit. A thread drains their shared stderr into
    :attr:`log` (a full pipe would freeze a worker that logs) and notes each one's ready line.
    """

    def __init__(self, config: Path, base_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        env |= {"ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "sim"}
        self.config = config
        self.log: list[str] = []
        self._pidfds: dict[int, int] = {}
        self._ready: dict[int, str] = {}
        self._changed = threading.Condition()
        self._starting = threading.Lock()
        self._zygote = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            cwd=REPO,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self._zygote.stderr is not None
        for line in self._zygote.stderr:
            with self._changed:
                self.log.append(line)
                for consumer in READY.findall(line):
                    self._ready[int(consumer.split("-")[-2])] = consumer
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def start(self, *options: str) -> tuple[int, str]:
        """A new worker's pid and consumer name, once it is ready (callable from several threads)."""
        zygote = self._zygote
        assert zygote.stdin is not None
        assert zygote.stdout is not None
        with self._starting:
            zygote.stdin.write(" ".join(["worker", str(self.config), *options]) + "\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            self._pidfds[pid] = os.pidfd_open(pid)
        with self._changed:
            if not self._changed.wait_for(lambda: pid in self._ready or not self._drain.is_alive(), 30):
                raise AssertionError(f"worker {pid} was not ready within 30 s")
            if pid not in self._ready:
                raise AssertionError("the worker zygote died")
            return pid, self._ready[pid]

    def signal(self, pid: int, sig: int) -> None:
        signal.pidfd_send_signal(self._pidfds[pid], sig)

    def close(self) -> None:
        for fd in self._pidfds.values():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        self._pidfds.clear()
        self._zygote.kill()
        self._zygote.wait(15)
        self._drain.join(10)  # EOF once the last worker holding the pipe is gone
        for stream in (self._zygote.stdin, self._zygote.stdout, self._zygote.stderr):
            if stream is not None:
                stream.close()


class SimulatorProcess:
    """``python -m pipeline.apps.simulator`` on a free loopback port, its stderr drained by a thread."""

    def __init__(self, *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.apps.simulator", "--port", "0", *options],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not found:
            end_process(self.process)
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.base_url = found.group(0)
        self._drain = threading.Thread(target=self.process.stderr.read, daemon=True)
        self._drain.start()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._drain.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextlib.contextmanager
def redis_and_simulator(
    directory: Path, *simulator_options: str
) -> Iterator[tuple[RedisServer, SimulatorProcess]]:
    """A Redis server keeping its files in ``directory`` and a simulator process, for a benchmark."""
    redis = RedisServer(directory)
    redis.start()
    try:
        sim = SimulatorProcess(*simulator_options)
        try:
            yield redis, sim
        finally:
            sim.close()
    finally:
        redis.stop()


def end_process(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Ends one process this harness started, by its pid; a SIGTERM that is ignored becomes a SIGKILL."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stderr is not None:
        process.stderr.close()


def report_request(index: int, max_tokens: int = 4000) -> dict[str, Any]:
    prompt = f"Report {index}: " + "rivers and the land they shape " * (1 + index % 5)
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]}


async def wait_progress(
    events: RedisEventLog, job_ids: Sequence[str], owner: str, chars: int, within: float
) -> int:
    """Waits until a job ``owner`` runs has persisted ``chars``; returns how many it runs (0: gave up)."""
    with anyio.move_on_after(within):
        while True:
            states = [await events.status(job) for job in job_ids]
            mine = [s for s in states if s.get("owner") == owner and s.get("status") == "running"]
            if any(int(s.get("chars", 0)) >= chars for s in mine):
                return len(mine)
            await anyio.sleep(0.02)
    return 0


async def wait_finished(
    events: RedisEventLog, job_ids: Sequence[str], within: float
) -> dict[str, dict[str, str]]:
    """Polls until every job has ended; returns their status hashes as first seen finished.

    Each job is polled until it is seen finished, then never again: with a short ``ttl_finished``
    its hash may be gone by the time the last job ends.
    """
    finished: dict[str, dict[str, str]] = {}
    with anyio.fail_after(within):
        while len(finished) < len(job_ids):
            for job in job_ids:
                if job not in finished:
                    state = await events.status(job)
                    if state.get("status") in ENDED:
                        finished[job] = state
            await anyio.sleep(0.05)
    return finished


@dataclass
class JobCheck:
    """What a finished job's log says, against the simulator's uninterrupted reference."""

    text: str
    reference: str
    ends: int
    ids_increasing: bool
    epochs: list[int]
    request_ids: list[str]


async def check_job(
    events: RedisEventLog, job_id: str, request: dict[str, Any], settings: SimulatorSettings
) -> JobCheck:
    entries = await events.range(job_id)
    text = accumulate(job_id, fold(entries)).text()
    keys = [(entry.seq, entry.epoch) for entry in entries]
    request_ids = [
        json.loads(entry.frame.data)["request_id"]
        for entry in entries
        if entry.frame.event == "rillet.headers"
    ]
    return JobCheck(
        text=text,
        reference=reference_plan(request, settings).text,
        ends=sum(entry.frame.event == "end" for entry in entries),
        ids_increasing=keys == sorted(keys) and len({seq for seq, _ in keys}) == len(keys),
        epochs=sorted({entry.epoch for entry in entries}),
        request_ids=request_ids,
    )


def billed_output_tokens(truth: dict[str, Any], body: dict[str, Any], settings: SimulatorSettings) -> int:
    """Output tokens the simulator sent for one request: all of them, or the deltas sent before a kill."""
    if truth["completed"]:
        return int(truth["usage"]["output_tokens"])
    sent = sum(event["type"] == "content_block_delta" for event in truth["events"])
    plan = build_plan(parse_request(json.dumps(body).encode()), SCENARIOS["report"], settings)
    deltas = (
        tokens for kind, _, tokens, _ in iter_events(plan, "msg", MODEL) if kind == "content_block_delta"
    )
    return sum(next(deltas, 0) for _ in range(sent))


def attempt_bodies(request: dict[str, Any], entries: list[Any]) -> dict[str, dict[str, Any]]:
    """Each logged request's body, rebuilt from the log as the worker that sent it built it."""
    bodies: dict[str, dict[str, Any]] = {}
    for position, entry in enumerate(entries):
        if entry.frame.event != "rillet.headers":
            continue
        attempt = json.loads(entry.frame.data)["attempt"]
        before = [e for e in entries[:position] if not _of_attempt(e, attempt)]
        bodies[json.loads(entry.frame.data)["request_id"]] = _body(request, before)
    return bodies


def _of_attempt(entry: Any, attempt: int) -> bool:
    return (
        entry.frame.event in ("rillet.attempt", "rillet.headers")
        and json.loads(entry.frame.data)["attempt"] == attempt
    )


def _body(request: dict[str, Any], before: list[Any]) -> dict[str, Any]:
    replay = fold(before)
    if not replay.events:
        return request
    stitcher = Stitcher(hold_tools=True)
    for _, event in replay.events:
        stitcher.feed(event)
    plan = plan_resume(request, stitcher.transcript, CONTINUED, ResumeSettings(), PrefillSupport())
    if not plan.blocks:
        return plan.request
    produced = count_tokens(counted_text(list(plan.blocks)))  # what the simulator's count answers
    return {**plan.request, "max_tokens": remaining(request, produced)}


async def simulator_truths(base_url: str) -> dict[str, dict[str, Any]]:
    """Every request the simulator process saw, with what it sent (``GET /_sim/requests``)."""
    import httpx2

    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
        ids = (await client.get("/_sim/requests")).json()["request_ids"]
        return {rid: (await client.get(f"/_sim/requests/{rid}")).json() for rid in ids}


@dataclass
class Billing:
    """Output tokens the simulator sent beyond one uninterrupted report, and the tails that explain them."""

    extra_by_job: dict[str, int]
    tails_by_job: dict[str, list[int]]
    """Per request whose worker was killed: tokens it was billed for that never reached the log."""
    orphan_bound: int
    """Requests in no log (killed before their first append): at most 6 tokens per delta they sent."""


async def billing(
    events: RedisEventLog,
    jobs: dict[str, dict[str, Any]],
    truths: dict[str, dict[str, Any]],
    settings: SimulatorSettings,
) -> Billing:
    extra: dict[str, int] = {}
    tails: dict[str, list[int]] = {}
    seen: set[str] = set()
    for job_id, request in jobs.items():
        entries = await events.range(job_id)
        bodies = attempt_bodies(request, entries)
        persisted = persisted_tokens(entries)
        seen |= bodies.keys()
        paid = {rid: billed_output_tokens(truths[rid], body, settings) for rid, body in bodies.items()}
        extra[job_id] = sum(paid.values()) - reference_plan(request, settings).output_tokens
        # Every request but the last was cut short by a kill, even one the simulator had finished
        # sending: its worker may have died before the last frames reached the log.
        tails[job_id] = [paid[rid] - persisted[rid] for rid in list(bodies)[:-1]]
    orphans = [truth for rid, truth in truths.items() if rid not in seen and truth["status"] == 200]
    bound = sum(6 * sum(e["type"] == "content_block_delta" for e in truth["events"]) for truth in orphans)
    return Billing(extra, tails, bound)


def persisted_tokens(entries: list[Any]) -> dict[str, int]:
    """Tokens of the text each logged request got into the log."""
    texts: dict[str, list[str]] = {}
    current: list[str] = []
    for entry in entries:
        if entry.frame.event == "rillet.headers":
            current = texts.setdefault(json.loads(entry.frame.data)["request_id"], [])
        elif entry.frame.event == "content_block_delta":
            delta = json.loads(entry.frame.data)["delta"]
            if delta.get("type") == "text_delta":
                current.append(delta["text"])
    return {rid: count_tokens("".join(parts)) for rid, parts in texts.items()}
