"""``rillet serve --max-kept-mib``: the logs of kept streams are bounded in bytes, oldest ended first.

Real processes: ``rillet serve`` against the simulator process, read over loopback HTTP.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import httpx2

from tests.conftest import SimulatorProcess, clean_environment

BUDGET = 1 << 20
STREAMS = 16


def test_kept_logs_stay_within_the_byte_budget_oldest_ended_first(
    simulator_process: SimulatorProcess,
) -> None:
    """Each stream's log is a sizeable part of 1 MiB: sixteen, run one after the other, cannot all be
    kept. The newest are kept, the oldest are forgotten (404), and what is kept fits the budget."""
    base_url = simulator_process("--tokens-per-s", "20000", "--report-tokens", "6000")
    env = clean_environment(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY="test-key")
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.apps", "serve", "--port", "0", "--max-kept-mib", "1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    sizes: dict[str, int] = {}
    try:
        url = None
        for line in server.stderr:
            if found := re.search(r"http://127\.0\.0\.1:\d+", line):
                url = found.group(0)
                break
        assert url, "the server did not say where it listens"
        drain = threading.Thread(target=server.stderr.read, daemon=True)
        drain.start()
        with httpx2.Client(base_url=url, timeout=60) as http:
            for n in range(STREAMS):
                created = http.post("/api/streams", json={"prompt": f"rivers {n}", "max_tokens": 8000})
                stream_id = created.json()["id"]
                sizes[stream_id] = len(http.get(f"/api/streams/{stream_id}/events").content)
            kept = [s for s in sizes if http.get(f"/api/streams/{s}").status_code == 200]
            gone = [s for s in sizes if s not in kept]
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        drain.join(5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
        server.stderr.close()
    order = list(sizes)
    assert min(sizes.values()) > BUDGET // 20, "each log is a sizeable part of the budget"
    assert gone, "the budget forgot some streams"
    assert kept, "the newest streams are kept"
    assert kept == order[-len(kept) :], "the oldest are forgotten first"
    assert sum(sizes[s] for s in kept) <= BUDGET
    assert len(kept) >= BUDGET // max(sizes.values()) - 1, "nothing forgotten needlessly"
