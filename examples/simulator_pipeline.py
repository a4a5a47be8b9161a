import anyio

from pipeline import AccumulateStage, Buffer, LatencyStage, OnFull, Pipeline, SinkSpec, make_client
from pipeline.apps.simulator import open_simulator
from sinks.file import FileSink
from sinks.stdout import StdoutSink


async def main() -> None:
    # The built-in simulator in this process; for the real API: make_client(api_key=None, base_url=None)
    async with open_simulator() as sim, make_client(api_key="any", base_url=sim.base_url) as client:
        sinks = [
            SinkSpec(FileSink("events.jsonl", mode="jsonl")),
            SinkSpec(StdoutSink(), Buffer(256, OnFull.DROP_OLDEST)),
        ]
        async with Pipeline(client, stages=[AccumulateStage, LatencyStage], sinks=sinks) as pipeline:
            result = await pipeline.run(
                {
                    "model": "claude-sonnet-4-6",
                    "max_tokens": 1024,
                    "messages": [{"role": "user", "content": "Hello"}],
                }
            )
    print(result.outcome, result.latency.to_first_delta if result.latency else None)


anyio.run(main)
