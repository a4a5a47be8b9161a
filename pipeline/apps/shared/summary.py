"""The one summary line every run ends with, on stderr, and with ``--verbose`` the client's delay."""

from __future__ import annotations

import math

from pipeline.client_delay import ClientDelay
from pipeline.runner import StreamResult


def summary_line(result: StreamResult, duration: float) -> str:
    """Outcome, tokens, cost, TTFT and duration: what a person checks after a run."""
    parts = [f"rillet: {result.outcome}"]
    if result.stop_reason:
        parts[0] += f" ({result.stop_reason})"
    if result.cost is not None:
        usage = result.cost.usage
        parts.append(f"{usage.output_tokens:,} output tokens, {usage.input_tokens:,} input")
        usd = "cost unknown" if math.isnan(result.cost.usd) else f"${result.cost.usd:.4f}"
        parts.append(usd + (" (estimated)" if result.cost.estimated else ""))
        if result.cost.saved_usd > 0:
            parts.append(f"resuming saved ${result.cost.saved_usd:.4f}")
    if result.latency is not None and result.latency.to_first_delta is not None:
        parts.append(f"TTFT {result.latency.to_first_delta:.3f} s")
    parts.append(f"{duration:.1f} s")
    if result.attempts > 1:
        parts.append(f"{result.attempts} attempts")
    if result.error:
        parts.append(result.error)
    return " · ".join(parts)


def delay_line(delay: ClientDelay) -> str:
    """How far behind the socket the client ran, which the wire-time TTFT and E2E cannot show."""
    points = (("p50", delay.quantile(0.5)), ("p99", delay.quantile(0.99)), ("max", delay.maximum))
    ms = " · ".join(f"{label} {seconds * 1000:.1f} ms" for label, seconds in points)
    return f"rillet: client delay, socket to sinks: {ms} over {delay.count:,} items"
