"""A resume's ``max_tokens``: the original budget less the output tokens the text so far cost.

A resumed report must end where the uninterrupted one would have, so the tokens already produced
are counted by the API itself, with its free ``POST /v1/messages/count_tokens`` (the SDK's
``messages.count_tokens``), not guessed from the length: at 4 characters a token, a guess off by
a few percent on a long partial leaves the continuation hundreds of characters short. The
endpoint counts a whole request, framing included, so the partial is counted as a user turn and
the framing cancelled by counting the same request with a one-token stand-in.

When counting fails (a server or proxy without the endpoint, an overload, a timeout) the estimate
at ``chars_per_token`` stands in; the ``rillet.resume`` log says which one was used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

logger = logging.getLogger("rillet.resume")

COUNT_TIMEOUT_S = 10.0
"""A count that takes longer than this is given up for the estimate: the resume must not wait."""

STAND_IN = "x"
"""One token in any tokenizer: counted alone, it measures the framing around the partial."""


def estimated_tokens(blocks: list[str], chars_per_token: float) -> int:
    """The output tokens ``blocks`` cost, estimated from their length."""
    return math.ceil(sum(map(len, blocks)) / chars_per_token)


def remaining(request: dict[str, Any], produced: int) -> int:
    """``max_tokens`` of a resume: the original less the output already produced (at least 1)."""
    return max(1, int(request["max_tokens"]) - produced)


def counted_text(blocks: list[str]) -> str:
    """What is counted for ``blocks``: the text as sent back (the last block rstripped, as the
    API demands and as the continuation then restores), blocks apart, so no word spans two."""
    return "\n\n".join([*blocks[:-1], blocks[-1].rstrip()])


async def counted_tokens(client: AsyncAnthropic, request: dict[str, Any], blocks: list[str]) -> int:
    """The output tokens ``blocks`` cost, counted by the API; raises :class:`anthropic.APIError`."""
    partial = counted_text(blocks)

    async def count(text: str) -> int:
        counted = await client.messages.count_tokens(
            model=request["model"],
            messages=[{"role": "user", "content": text}],
            extra_headers=request.get("extra_headers"),
            timeout=COUNT_TIMEOUT_S,
        )
        return counted.input_tokens

    return await count(partial) - await count(STAND_IN) + 1


async def fit_budget(
    client: AsyncAnthropic,
    sent_back: Sequence[str],
    resumed: dict[str, Any],
    request: dict[str, Any],
    chars_per_token: float,
) -> dict[str, Any]:
    """The ``resumed`` request with ``max_tokens`` from the counted tokens of the text it sends
    back (``sent_back``), or from their estimate when counting fails; one that sends none back is
    returned as it is."""
    import anthropic  # here, not at the top: resume settings are read by commands that never stream

    blocks = list(sent_back)
    if not blocks:
        return resumed
    try:
        produced = await counted_tokens(client, request, blocks)
        how = "counted by the API"
    except anthropic.APIError as exc:
        produced = estimated_tokens(blocks, chars_per_token)
        how = f"estimated at {chars_per_token:g} chars a token, as counting failed ({exc.__class__.__name__})"
    max_tokens = remaining(request, produced)
    logger.info("resume budget: %d tokens so far (%s), max_tokens %d", produced, how, max_tokens)
    return {**resumed, "max_tokens": max_tokens}
