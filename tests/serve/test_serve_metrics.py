"""``rillet serve`` with the config's prometheus sink and ``--metrics-port``, as a real process.

Its ``/metrics`` carries the pipeline's metrics for the streams it serves, and the SSE sink's lane;
a replica (``--redis``) refuses ``[[sinks]]``, since it runs no model.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import clean_environment
from tests.serve.harness import start, status

REPO = Path(__file__).resolve().parents[2]
RILLET = str(Path(sys.executable).parent / "rillet")


@pytest.fixture
def served() -> Iterator[tuple[str, str]]:
    """``rillet serve config/service.toml --port 0 --metrics-port 0``: (page URL, metrics URL)."""
    process = subprocess.Popen(
        [RILLET, "serve", str(REPO / "config" / "service.toml"), "--port", "0", "--metrics-port", "0"],
        env=clean_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "(Ctrl+C stops)" in line:
                break
        text = "".join(lines)
        page = re.search(r"open (http://\S+?)/ ", text)
        metrics = re.search(r"metrics on (http://\S+)", text)
        assert page is not None, text
        assert metrics is not None, text
        yield page.group(1), metrics.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.anyio
async def test_serve_exports_the_pipeline_metrics_of_its_streams(served: tuple[str, str]) -> None:
    page, metrics_url = served
    async with httpx2.AsyncClient(base_url=page, timeout=30) as http:
        ids = [await start(http, prompt=f"report {n}", max_tokens=600) for n in range(2)]
        with anyio.fail_after(60):
            for stream_id in ids:
                while (await status(http, stream_id))["state"] != "ended":  # noqa: ASYNC110
                    await anyio.sleep(0.1)  # a server's state can only be polled
        got = samples((await http.get(metrics_url)).text)
    model = frozenset({("model", "claude-sonnet-4-6")})
    assert got[("rillet_requests_total", model | {("outcome", "completed")})] == 2
    assert got[("rillet_time_to_first_delta_seconds_count", model)] == 2
    output = model | {("token_type", "output")}
    billed = got[("rillet_tokens_total", output)] - got[("rillet_tokens_overestimated_total", output)]
    assert billed > 0
    assert got[("rillet_cost_usd_total", model)] > 0
    assert got[("rillet_sink_written_items_total", frozenset({("sink", "sse")}))] > 0
    assert got[("rillet_sink_queue_capacity", frozenset({("sink", "prometheus")}))] == 4096


@pytest.mark.anyio
async def test_a_replica_refuses_sinks(tmp_path: Path) -> None:
    done = await anyio.run_process(
        [RILLET, "serve", str(REPO / "config" / "service.toml"), "--redis", "redis://127.0.0.1:1"],
        check=False,
        cwd=tmp_path,
    )
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1, lines
    assert "a replica (--redis) runs no model" in lines[0]
