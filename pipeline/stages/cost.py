"""Cost meter: what a logical stream costs in USD, priced by genai-prices, summed over its attempts.

The API reports usage twice per HTTP attempt: input and cache tokens in ``message_start``, the
cumulative totals in ``message_delta`` (fields it leaves out keep their ``message_start`` value).
Between the two, output tokens are estimated from the streamed output (text, thinking and tool
input) at ``chars_per_token`` chars a token, and the cost is flagged ``estimated`` until every
attempt's ``message_delta`` is in; an attempt that dropped before it stays estimated for good,
since its output was billed but never reported.

Each attempt is priced on its own and the USD summed: attempts are separately billed requests,
and long-context tiers depend on each request's input. genai-prices takes ~100 µs a call, so a
price is computed only when usage is reported (memoised per model and usage, which a benchmark
repeats) and the running estimate is extrapolated with the attempt's price per output token.
A model genai-prices does not know costs ``nan`` (unknown), logged once per model.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from genai_prices import Usage as PricedUsage
from genai_prices import calc_price

from pipeline.events import CostUpdate, Item, Usage, streamed_text
from pipeline.stages._base import StreamContext

logger = logging.getLogger(__name__)

_RATE_PROBE = 1_000_000
"""Output tokens added to price one more output token without rounding trouble."""


@dataclass(frozen=True, slots=True)
class CostSettings:
    """How the running estimate is made and how often it is sent."""

    chars_per_token: float = 4.0
    """English prose averages about four chars a token; the final usage replaces the guess."""
    every_tokens: int = 64
    """An estimate is sent each time the estimated output grows by this many tokens."""


class Billable(NamedTuple):
    """One request's usage in genai-prices' terms, as its Anthropic extractor maps the API's."""

    input_tokens: int
    """All input: uncached, cache reads and cache writes."""
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    web_searches: int
    output_tokens: int


@functools.lru_cache(maxsize=4096)
def price(model: str, billable: Billable) -> float:
    """The USD genai-prices charges for one request, or ``nan`` when it has no price for ``model``."""
    try:
        priced = calc_price(PricedUsage(**billable._asdict()), model, provider_id="anthropic")
    except LookupError:
        _unknown_model(model)
        return math.nan
    return float(priced.total_price)


@functools.cache
def _unknown_model(model: str) -> None:
    logger.warning("genai-prices has no price for model %r: its cost is reported as unknown (nan).", model)


@dataclass(slots=True)
class _Attempt:
    """One HTTP attempt's usage as last reported, its price, and the output streamed since."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    web_searches: int = 0
    usd: float = 0.0
    usd_per_output_token: float = 0.0
    chars: int = 0
    final: bool = False
    estimated_tokens: int = 0

    def report(self, usage: Any, *, final: bool) -> None:
        """Takes a usage object of the SDK; fields it leaves out (None) keep their value."""
        for name, api_name in _API_FIELDS:
            value = getattr(usage, api_name, None)
            if value is not None:
                setattr(self, name, value)
        cache_creation = getattr(usage, "cache_creation", None)
        if cache_creation is not None:
            self.cache_write_1h_tokens = getattr(cache_creation, "ephemeral_1h_input_tokens", 0) or 0
        server_tools = getattr(usage, "server_tool_use", None)
        if server_tools is not None:
            self.web_searches = getattr(server_tools, "web_search_requests", 0) or 0
        self.final = final
        self.chars = 0
        self.estimated_tokens = self.output_tokens
        self.usd = price(self.model, self._billable(self.output_tokens))
        if not final:
            more = price(self.model, self._billable(self.output_tokens + _RATE_PROBE))
            self.usd_per_output_token = (more - self.usd) / _RATE_PROBE

    def stream(self, chars: int, chars_per_token: float) -> None:
        """Counts output streamed since the last report."""
        self.chars += chars
        self.estimated_tokens = self.output_tokens + math.ceil(self.chars / chars_per_token)

    def estimate(self) -> float:
        return self.usd + self.usd_per_output_token * (self.estimated_tokens - self.output_tokens)

    def _billable(self, output_tokens: int) -> Billable:
        return Billable(
            self.input_tokens + self.cache_read_tokens + self.cache_write_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.web_searches,
            output_tokens,
        )


_API_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_tokens", "cache_read_input_tokens"),
    ("cache_write_tokens", "cache_creation_input_tokens"),
)


RESUMES = frozenset({"prefill", "continue"})
"""Strategies that continue the text received so far, rather than generate it again."""


class CostStage:
    """Sends a :class:`CostUpdate` at each usage report and as the estimated output grows."""

    def __init__(self, ctx: StreamContext, settings: CostSettings | None = None) -> None:
        self.settings = settings or CostSettings()
        self._ctx = ctx
        self._attempts: dict[int, _Attempt] = {}
        self._strategies: dict[int, str] = {}
        self._current: _Attempt | None = None
        self._next_tokens = 0
        self._stale = False

    def process(self, item: Item) -> Sequence[Item]:
        event = item.event
        kind = event.type
        current = self._current
        if kind == "content_block_delta":
            text = streamed_text(event.delta)
            if current is None or text is None:
                return (item,)
            current.stream(len(text), self.settings.chars_per_token)
            self._stale = True
            if current.estimated_tokens < self._next_tokens:
                return (item,)
        elif kind == "message_start":
            current = self._current = _Attempt(str(event.message.model))
            self._attempts[item.attempt] = current
            current.report(event.message.usage, final=False)
        elif kind == "message_delta" and item.attempt in self._attempts:
            self._attempts[item.attempt].report(event.usage, final=True)
        else:
            if kind == "rillet.attempt":
                self._strategies[event.attempt] = event.strategy
            return (item,)
        return (item, item.derive(self._update()))

    def finish(self) -> Sequence[Item]:
        """Sends the last estimate when output streamed after the last update (a dropped attempt)."""
        return (self._ctx.item(self._update()),) if self._stale else ()

    def total(self) -> CostUpdate | None:
        """The cost so far, for the summary line; None before any ``message_start``."""
        return self._snapshot() if self._attempts else None

    def _update(self) -> CostUpdate:
        self._stale = False
        self._next_tokens = (
            self._current.estimated_tokens + self.settings.every_tokens if self._current is not None else 0
        )
        return self._snapshot()

    def _snapshot(self) -> CostUpdate:
        attempts = self._attempts.values()
        return CostUpdate(
            usd=sum(attempt.estimate() for attempt in attempts),
            estimated=not all(attempt.final for attempt in attempts),
            model=self._current.model if self._current is not None else self._ctx.model,
            usage=Usage(
                input_tokens=sum(attempt.input_tokens for attempt in attempts),
                output_tokens=sum(attempt.estimated_tokens for attempt in attempts),
                cache_read_input_tokens=sum(attempt.cache_read_tokens for attempt in attempts),
                cache_creation_input_tokens=sum(attempt.cache_write_tokens for attempt in attempts),
            ),
            attempts=len(self._attempts),
            saved_usd=self._saved(),
        )

    def _saved(self) -> float:
        """Per resumed attempt: the output since the last fresh start, priced, less the extra input."""
        saved, produced, first = 0.0, 0, None
        for number in sorted(self._attempts):
            attempt = self._attempts[number]
            strategy = self._strategies.get(number, "initial")
            if strategy in RESUMES and first is not None:
                regenerated = price(attempt.model, Billable(0, 0, 0, 0, 0, produced))
                extra_input = max(0, attempt.input_tokens - first.input_tokens)
                saved += regenerated - price(attempt.model, Billable(extra_input, 0, 0, 0, 0, 0))
            else:
                first, produced = attempt, 0
            produced += attempt.estimated_tokens
        return saved
