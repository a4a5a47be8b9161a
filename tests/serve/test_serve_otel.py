"""``rillet serve`` with ``[otel]``, as a real process: each stream it serves is one trace, exported
over OTLP/HTTP to a receiver on loopback when the server stops."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import pytest

from tests.conftest import clean_environment
from tests.otlp_collector import Collector, collector
from tests.serve.harness import start, status

__all__ = ["collector"]  # the fixture, imported to be used here

REPO = Path(__file__).resolve().parents[2]
RILLET = str(Path(sys.executable).parent / "rillet")
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def served(collector: Collector, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``rillet serve`` with ``[otel]`` exporting to ``collector``: (page URL, the process)."""
    config = tmp_path / "service.toml"
    config.write_text(
        (REPO / "config" / "service.toml").read_text(encoding="utf-8")
        + f'\n[otel]\nenabled = true\nendpoint = "{collector.endpoint}"\n',
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [RILLET, "serve", str(config), "--port", "0", "--simulator", "fast"],
        env=clean_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            if "(Ctrl+C stops)" in line:
                break
        page = re.search(r"open (http://\S+?)/ ", "".join(lines))
        assert page is not None, lines
        yield page.group(1), process
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


@pytest.mark.anyio
async def test_serve_traces_each_stream_and_flushes_at_its_stop(
    collector: Collector, served: tuple[str, subprocess.Popen[str]]
) -> None:
    page, process = served
    async with httpx2.AsyncClient(base_url=page, timeout=30) as http:
        ids = [await start(http, prompt=f"report {n}", max_tokens=300) for n in range(2)]
        with anyio.fail_after(60):
            for stream_id in ids:
                while (await status(http, stream_id))["state"] != "ended":  # noqa: ASYNC110
                    await anyio.sleep(0.1)  # a server's state can only be polled
    process.terminate()  # SIGTERM: the server stops, and the otel sink flushes its exporters
    assert await anyio.to_thread.run_sync(process.wait, 30) == 0
    spans = collector.spans()
    streams = {span.span_id: span for span in spans if span.name == f"chat {MODEL}"}
    served_ids = {
        {kv.key: kv.value.string_value for kv in span.attributes}["rillet.stream_id"]
        for span in streams.values()
    }
    assert served_ids == set(ids)
    attempts = [span for span in spans if span.name == "anthropic.messages.create"]
    assert len(attempts) == 2
    assert {span.parent_span_id for span in attempts} == set(streams)
    assert "gen_ai.client.token.usage" in collector.metric_names()
