"""``rillet run``: stream one long-form report to the terminal and a file.

SIGINT and SIGTERM stop the stream, not the process: the upstream response is closed, every sink
flushes (the file keeps the partial report with a marker), the summary line is printed, and the
exit status says which signal it was (130, 143). A second signal exits at once
(:mod:`pipeline.apps.shared.interrupts`, which also handles one that comes before the stream listens).
"""

from __future__ import annotations

import signal
import sys
import time

from pipeline.apps.shared import interrupts
from pipeline.apps.shared.build import build_request, build_sinks, build_stages, tracer_provider
from pipeline.apps.shared.endpoint import open_endpoint, simulator_preset
from pipeline.apps.shared.summary import delay_line, summary_line
from pipeline.client import make_client
from pipeline.config import RunConfig
from pipeline.runner import Pipeline, StreamResult

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
OUTCOME_EXIT = {"completed": 0, "error": 1, "aborted_repetition": 3, "cancelled": 130}


async def run_report(config: RunConfig, *, verbose: bool = False, simulator: str | None = None) -> int:
    """Runs the job and returns the process exit status; ``simulator`` names the embedded
    simulator's preset, used when no API is configured."""
    simulated = simulator_preset(simulator)
    request = build_request(config.request)
    started = time.perf_counter()
    async with open_endpoint(config.api.base_url, simulator=simulated) as endpoint:
        sinks = build_sinks(config, verbose=verbose, status_line=sys.stderr.isatty())
        client = make_client(
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            max_connections=config.api.max_connections,
            timeout=config.api.timeout,
            tracer_provider=tracer_provider(sinks),
        )
        async with (
            client,
            Pipeline(client, stages=build_stages(config), sinks=sinks, resume=config.resume) as pipeline,
        ):
            stream = pipeline.stream(request)
            with interrupts.listening(stream.cancel):
                result: StreamResult = await pipeline.run_stream(stream)
    print(summary_line(result, time.perf_counter() - started), file=sys.stderr)
    if verbose:
        print(delay_line(result.client_delay), file=sys.stderr)
    if caught := interrupts.caught():
        return SIGNAL_EXIT[caught[0]]
    if result.failure is not None and result.error_type == "sink_error":
        print(f"rillet: error: {result.failure}", file=sys.stderr)
    return OUTCOME_EXIT[result.outcome]
