"""Server-wide simulator settings; per-request headers (see :mod:`._app`) can override some."""

from __future__ import annotations

from dataclasses import dataclass

from ._scenarios import SCENARIO_NAMES


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """How the simulator behaves for every request that does not say otherwise.

    Timing: ``ttft_ms`` runs from request receipt to the first ``content_block_delta``; the response
    headers and ``message_start`` go out ``min(ttft_ms / 2, 25)`` ms before it. After it, each delta
    is due when its last token is, at ``tokens_per_s`` (0: as fast as possible). ``jitter`` (0 to
    <1) scales the TTFT and every gap by a seeded factor in ``[1 - jitter, 1 + jitter]``.

    ``seed`` is mixed into every text seed (and the jitter), so two settings with different seeds
    give different reports for the same prompt. ``report_tokens`` overrides a report's natural
    length (tokens; default: 9,000 to 15,000, drawn per prompt). ``fail_first``: fault scenarios
    fault only the first N attempts of a request body, then serve it as ``report``.
    ``api_key``: if set, only that key is accepted.
    """

    scenario: str = "report"
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    drop_after: int | None = None
    drop_continuations: bool = False
    fail_first: int | None = None
    retry_after_s: float = 1.0
    report_tokens: int | None = None
    api_key: str | None = None
    truth_limit: int = 10_000

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIO_NAMES:
            raise ValueError(
                f"unknown scenario {self.scenario!r}; expected one of {', '.join(SCENARIO_NAMES)}"
            )
        if self.ttft_ms < 0 or self.tokens_per_s < 0 or self.retry_after_s < 0:
            raise ValueError("ttft_ms, tokens_per_s and retry_after_s must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        for name in ("drop_after", "fail_first", "report_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.truth_limit < 1:
            raise ValueError("truth_limit must be >= 1")


PRESETS: dict[str, SimulatorSettings] = {
    "claude": SimulatorSettings(ttft_ms=750.0, tokens_per_s=65.0, jitter=0.3, report_tokens=1_800),
    "fast": SimulatorSettings(),
}
"""Named settings for the embedded simulator. ``claude`` paces a report as Claude Sonnet streams
one (TTFT about 0.75 s, about 65 tokens/s, each gap jittered by up to 30 %, seeded) and keeps it to
about 1,800 tokens (7,000 characters, half a minute), so that trying rillet without a key looks
like the real thing; ``fast`` streams as fast as possible (tests, benchmarks)."""
