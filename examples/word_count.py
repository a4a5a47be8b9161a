"""A custom stage: counts the answer's words as they stream, and adds the total when the stream ends.

A stage is a plain object that a factory (here the class itself) builds for each stream from the
stream's context: ``process(item)`` returns the items to pass on (the same one, unchanged: a tuple
of one), and ``finish()`` what to add at the end. ``Pipeline(...)`` checks both when it is built.

Run: ``python examples/word_count.py`` (no API key needed: it starts the built-in simulator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from pipeline import AccumulateStage, Item, Pipeline, StreamContext, make_client
from pipeline.apps.simulator import open_simulator
from pipeline.events import report_text


@dataclass(frozen=True)
class WordCount:
    """The event this stage adds; sinks see it like any other (its ``type`` names it)."""

    words: int
    type: str = "example.word_count"


class WordCountStage:
    def __init__(self, context: StreamContext) -> None:
        self.context = context
        self.words = 0
        self.in_word = False  # a word may be split across two deltas

    def process(self, item: Item) -> Sequence[Item]:
        text = report_text(item)
        if text:
            continued = self.in_word and not text[0].isspace()
            self.words += len(text.split()) - continued
            self.in_word = not text[-1].isspace()
        return (item,)

    def finish(self) -> Sequence[Item]:
        return (self.context.item(WordCount(self.words)),)


async def main() -> None:
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 800,
        "messages": [{"role": "user", "content": "A short history of canals."}],
    }
    async with open_simulator() as sim, make_client(api_key="any", base_url=sim.base_url) as client:
        async with Pipeline(client, stages=[AccumulateStage, WordCountStage], sinks=[]) as pipeline:
            stream = pipeline.stream(request)
            result = await pipeline.run_stream(stream)
    counter = stream.stages[-1]
    assert isinstance(counter, WordCountStage)
    assert result.message is not None
    final_text = "".join(block.get("text", "") for block in result.message["content"])
    print(f"{counter.words} words counted while streaming; {len(final_text.split())} in the final message")


if __name__ == "__main__":
    anyio.run(main)
