"""The event sequence of a streamed answer, produced lazily so a long stream costs little memory.

Each item is ``(type, bytes, tokens, timed)``: ``timed`` events (deltas that carry tokens) are
scheduled by the token clock; every other event goes out right after the one before it. Deltas
carry a seeded 2 to 6 tokens each (1 to 3 for a block's first), like the real API's small chunks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from . import _wire as wire
from ._plan import Block, ResponsePlan
from ._text import count_tokens, iter_token_groups

Event = tuple[str, bytes, int, bool]


def _sizes(rng: random.Random) -> Iterator[int]:
    yield rng.randint(1, 3)
    while True:
        yield rng.randint(2, 6)


def _json_chunks(payload: str, rng: random.Random) -> Iterator[str]:
    i = 0
    while i < len(payload):
        step = rng.randint(4, 12)
        yield payload[i : i + step]
        i += step


def _breaks_end_paragraphs(groups: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """Ends a delta at every line break, as real deltas often end a paragraph with its break
    (``"…river.\n\n"``): a drop right after one tests a resume's whitespace handling. Token counts
    are unchanged, since a token's whitespace is counted with the token it leads."""
    held = ""
    for piece, _ in groups:
        for part in _AFTER_BREAK.split(piece):
            if held and not part.strip():
                held += part
                continue
            if held:
                yield held, count_tokens(held)
            held = part
    if held:
        yield held, count_tokens(held)


_AFTER_BREAK = re.compile(r"(?<=\n)(?=[^\n])")


def _block_events(index: int, block: Block, rng: random.Random) -> Iterator[Event]:
    if block.type == "tool_use":
        prefix = wire.delta_prefix(index, "tool_use")
        yield "content_block_delta", wire.delta(prefix, ""), 0, False
        for chunk in _json_chunks(block.text, rng):
            yield "content_block_delta", wire.delta(prefix, chunk), max(1, count_tokens(chunk)), True
        return
    prefix = wire.delta_prefix(index, block.type)
    for piece, n in _breaks_end_paragraphs(iter_token_groups(block.text, _sizes(rng))):
        yield "content_block_delta", wire.delta(prefix, piece), n, True
    if block.type == "thinking":
        yield "content_block_delta", wire.delta(prefix, ""), 0, False
        yield (
            "content_block_delta",
            wire.delta(wire.delta_prefix(index, "signature"), block.signature),
            0,
            False,
        )


def iter_events(plan: ResponsePlan, message_id: str, model: str) -> Iterator[Event]:
    """Every event of the streamed answer to ``plan``, in order."""
    rng = random.Random(f"chunks:{plan.seed}")
    yield "message_start", wire.message_start(message_id, model, plan.input_tokens), 0, False
    if not plan.blocks:
        yield "ping", wire.PING, 0, False
    for index, block in enumerate(plan.blocks):
        yield "content_block_start", wire.block_start(index, block), 0, False
        if index == 0:
            yield "ping", wire.PING, 0, False
        yield from _block_events(index, block, rng)
        yield "content_block_stop", wire.block_stop(index), 0, False
    yield "message_delta", wire.message_delta(plan), 0, False
    yield "message_stop", wire.MESSAGE_STOP, 0, False
