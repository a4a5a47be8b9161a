"""From a validated config to the things a run is made of: the request, stage factories, sinks."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.config import (
    FileSinkConfig,
    OtelConfig,
    PrometheusSinkConfig,
    RequestConfig,
    RunConfig,
    SinkConfig,
    StdoutSinkConfig,
)
from pipeline.errors import ConfigError
from pipeline.sink import Buffer, OnError, OnFull, SinkSpec
from pipeline.stages import StageFactory
from sinks.file import FileSink
from sinks.prometheus import PrometheusSink
from sinks.status import StatusLineSink
from sinks.stdout import StdoutSink

DEFAULT_PROMPT = (
    "Write a long-form report, about 5,000 words, on how rivers shape the land: "
    "erosion, deposition, floods and the people who live beside them. "
    "Use markdown headings and full paragraphs."
)


MAX_REQUEST_BYTES = 32_000_000
"""The Messages API refuses a larger request (413 ``request_too_large``, "32 MB" in its errors
page); refused here instead, before a byte is sent or a huge prompt file is read whole."""


def build_request(config: RequestConfig) -> dict[str, Any]:
    """The Messages API request body the source sends."""
    request: dict[str, Any] = {
        "model": config.model,
        "max_tokens": config.max_tokens,
        "messages": [{"role": "user", "content": read_prompt(config)}],
    }
    for key in ("system", "temperature", "metadata"):
        value = getattr(config, key)
        if value is not None:
            request[key] = value
    size = len(json.dumps(request).encode())
    if size > MAX_REQUEST_BYTES:
        raise ConfigError(
            f"request: the request would be {size:,} bytes; the Messages API accepts at most "
            f"{MAX_REQUEST_BYTES:,} (32 MB)"
        )
    return request


def read_prompt(config: RequestConfig) -> str:
    """The prompt, from the config, a prompt file, or the built-in report prompt."""
    if config.prompt_file is None:
        return config.prompt or DEFAULT_PROMPT
    try:
        with config.prompt_file.open("rb") as file:
            data = file.read(MAX_REQUEST_BYTES + 1)
            size = max(os.fstat(file.fileno()).st_size, len(data))
        if len(data) > MAX_REQUEST_BYTES:
            raise ConfigError(
                f"request.prompt_file: {str(config.prompt_file)!r} is {size:,} bytes; "
                f"the Messages API accepts requests of at most {MAX_REQUEST_BYTES:,} (32 MB)"
            )
        prompt = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"request.prompt_file: cannot read {str(config.prompt_file)!r}: {exc}") from exc
    if not prompt.strip():
        raise ConfigError(f"request.prompt_file: {str(config.prompt_file)!r} is empty")
    return prompt


def build_stages(config: RunConfig) -> list[StageFactory]:
    return [stage.factory() for stage in config.stages]


def build_sink(config: SinkConfig, *, verbose: bool, registry: CollectorRegistry | None = None) -> SinkSpec:
    """One configured sink with its fan-out policies; a prometheus sink's families go on ``registry``."""
    if isinstance(config, FileSinkConfig):
        sink: Any = FileSink(config.path, mode=config.mode, name=config.name)
    elif isinstance(config, StdoutSinkConfig):
        sink = StdoutSink(verbose=config.verbose or verbose, name=config.name)
    else:
        sink = PrometheusSink(
            address=config.address,
            pushgateway=config.pushgateway,
            job=config.job,
            grouping=config.grouping,
            push_interval=config.push_interval,
            delete_on_success=config.delete_on_success,
            linger=config.linger,
            name=config.name,
            ttft_buckets=config.ttft_buckets,
            duration_buckets=config.duration_buckets,
            registry=registry,
        )
    return SinkSpec(sink, config.buffer_spec(), config.on_error)


def build_sinks(config: RunConfig, *, verbose: bool, status_line: bool) -> list[SinkSpec]:
    """The configured sinks, plus the live status line when stderr is a terminal."""
    specs = [build_sink(sink, verbose=verbose) for sink in config.sinks]
    if config.otel.enabled:
        specs.append(build_otel_sink(config.otel))
    if status_line:
        specs.append(SinkSpec(StatusLineSink(sys.stderr), Buffer(256, OnFull.DROP_OLDEST), OnError.DISABLE))
    return specs


def build_otel_sink(config: OtelConfig) -> SinkSpec:
    """The ``[otel]`` table's sink; imports OpenTelemetry's SDK, so only when it is enabled."""
    try:
        from sinks.otel import OtelSink
    except ImportError as exc:
        raise ConfigError(f"otel.enabled needs the otel extra (pip install 'rillet[otel]'): {exc}") from None
    # Telemetry must not stop a report: a failing sink is disabled, its buffer blocks (a dropped end
    # would leave its stream's span open until the run ends).
    sink = OtelSink(endpoint=config.endpoint, service_name=config.service_name)
    return SinkSpec(sink, Buffer(4096, OnFull.BLOCK), OnError.DISABLE)


def tracer_provider(specs: Sequence[SinkSpec]) -> Any:
    """The otel sink's tracer provider, for :func:`pipeline.client.make_client`; None without one."""
    providers = (getattr(spec.sink, "tracer_provider", None) for spec in specs)
    return next((provider for provider in providers if provider is not None), None)


def build_service_sinks(
    config: RunConfig,
    *,
    command: str,
    source: str,
    metrics_port: int | None,
    registry: CollectorRegistry | None = None,
) -> list[SinkSpec]:
    """The sinks of a process that runs many streams at once (``rillet serve``, ``rillet worker``).

    Only metrics apply there: one report file or one terminal cannot hold many reports at once, so
    any other sink the config names is refused (:class:`ConfigError`, naming ``source`` and the
    sink), never ignored. A config without ``[[sinks]]`` names none (its defaults are for ``rillet
    run``). ``--metrics-port`` serves the prometheus sink on that loopback port, adding one if the
    config has none; that one does not linger, a long-running process has no short end to catch.
    """
    configured = config.sinks if "sinks" in config.model_fields_set else []
    prometheus: list[PrometheusSinkConfig] = []
    for index, sink in enumerate(configured):
        if not isinstance(sink, PrometheusSinkConfig):
            raise ConfigError(
                f"{source}: sinks[{index}] ({sink.name}): {command} runs many streams at once, so a "
                f"{sink.type} sink cannot apply; only prometheus sinks do"
            )
        prometheus.append(sink)
    if len(prometheus) > 1:
        raise ConfigError(f"{source}: {command} serves one /metrics: give it one prometheus sink")
    if metrics_port is not None:
        address = f"127.0.0.1:{metrics_port}"
        if prometheus:
            prometheus = [prometheus[0].model_copy(update={"address": address})]
        else:
            prometheus = [
                PrometheusSinkConfig(
                    type="prometheus", name="prometheus", address=address, linger=0, on_error=OnError.DISABLE
                )
            ]
    specs = [build_sink(sink, verbose=False, registry=registry) for sink in prometheus]
    if config.otel.enabled:
        specs.append(build_otel_sink(config.otel))
    return specs
