"""The built-in sinks meet the sink contract: the file sink in both modes, the stdout sink, the
OpenTelemetry sink."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from pipeline.sink import Sink
from sinks.file import FileSink
from sinks.otel import OtelSink
from sinks.stdout import StdoutSink
from tests.sinks.conformance import CHECKS, Check, SinkFactory


def factories(folder: Path) -> dict[str, SinkFactory]:
    def stdout() -> Sink:
        return StdoutSink(verbose=True, stream=io.StringIO(), err=io.StringIO())

    return {
        "file-text": lambda: FileSink(folder / "report.md", mode="text"),
        "file-jsonl": lambda: FileSink(folder / "events.jsonl", mode="jsonl"),
        "file-per-stream": lambda: FileSink(folder / "{stream_id}.md", mode="text"),
        "stdout": stdout,
        "otel": lambda: OtelSink(
            tracer_provider=TracerProvider(), meter_provider=MeterProvider([InMemoryMetricReader()])
        ),
    }


@pytest.mark.anyio
@pytest.mark.parametrize("sink", ["file-text", "file-jsonl", "file-per-stream", "stdout", "otel"])
@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
async def test_conformance(check: Check, sink: str, tmp_path: Path) -> None:
    """Each built-in sink passes each check of the contract."""
    await check(factories(tmp_path)[sink])
