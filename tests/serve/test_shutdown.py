"""SIGTERM to ``rillet serve`` with browsers reading: each response ends with a ``shutdown`` end frame.

Real processes: ``rillet serve`` (``python -m pipeline.apps serve``) against the simulator process,
read over loopback HTTP by the same event-stream parser that stands for a browser.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx2

from tests.conftest import SimulatorProcess, clean_environment
from tests.serve.sse_parser import Event, SseParser


def test_sigterm_ends_every_open_response_with_a_shutdown_end_frame(
    simulator_process: SimulatorProcess,
) -> None:
    base_url = simulator_process("--tokens-per-s", "100")
    env = clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test-key")
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.apps", "serve", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    try:
        url = None
        for line in server.stderr:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                url = found.group(0)
                break
        assert url, "the server did not say where it listens"
        drain = threading.Thread(target=server.stderr.read, daemon=True)
        drain.start()
        with httpx2.Client(base_url=url, timeout=30) as http:
            ids = [http.post("/api/streams", json={"prompt": f"rivers {n}"}).json()["id"] for n in range(2)]
            readers: list[tuple[SseParser, Iterator[bytes], list[Event]]] = []
            with (
                http.stream("GET", f"/api/streams/{ids[0]}/events") as first,
                http.stream("GET", f"/api/streams/{ids[1]}/events") as second,
            ):
                for response in (first, second):
                    parser, chunks = SseParser(), response.iter_bytes()
                    events: list[Event] = []
                    while not any(e.type == "content_block_delta" for e in events):
                        events += parser.feed(next(chunks))
                    readers.append((parser, chunks, events))
                server.send_signal(signal.SIGTERM)
                for parser, chunks, events in readers:
                    for chunk in chunks:
                        events += parser.feed(chunk)
        server.wait(30)
        drain.join(5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
        server.stderr.close()
    for _, _, events in readers:
        last = events[-1]
        assert last.type == "end"
        assert json.loads(last.data)["outcome"] == "shutdown"
        assert json.loads(last.data)["reconnect"] is True
        assert last.last_event_id == events[-2].last_event_id, "the shutdown frame carries no id"
        assert sum(e.type == "end" for e in events) == 1
