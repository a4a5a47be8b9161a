"""The console summary, in the shape vLLM's ``bench serve`` prints, then rillet's own sections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.apps.bench.stats import percentile_label

WIDTH = 50

_SECTIONS = (
    ("ttft", "TTFT", "Time to First Token"),
    ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl", "ITL", "Inter-token Latency"),
    ("e2el", "E2EL", "End-to-end Latency"),
)

_VARIANTS = (
    ("to_headers", "headers"),
    ("to_message_start", "message_start"),
    ("ttft_text", "first text"),
    ("ttft_thinking", "first thinking"),
)


def _title(text: str, fill: str = "-") -> str:
    return f"{text:{fill}^{WIDTH}}"


def _row(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name:<40} {value:<10.2f}"
    return f"{name:<40} {value!s:<10}"


def _stats(result: dict[str, Any], key: str, label: str, percentiles: Sequence[float]) -> list[str]:
    lines = [_row(f"Mean {label} (ms):", result[f"mean_{key}_ms"])]
    lines.append(_row(f"Median {label} (ms):", result[f"median_{key}_ms"]))
    lines += [
        _row(f"P{percentile_label(p)[1:]} {label} (ms):", result[f"{percentile_label(p)}_{key}_ms"])
        for p in percentiles
        if p != 50
    ]
    return lines


def summary(result: dict[str, Any]) -> str:
    """Every line a person reads after a point, vLLM's block first."""
    p = result["percentiles"]
    lines = [_title(" Serving Benchmark Result ", "=")]
    lines.append(_row("Successful requests:", result["completed"]))
    lines.append(_row("Failed requests:", result["failed"]))
    if result["max_concurrency"] is not None:
        lines.append(_row("Maximum request concurrency:", result["max_concurrency"]))
    if result["request_rate"] != "inf":
        lines.append(_row("Request rate configured (RPS):", float(result["request_rate"])))
    lines.append(_row("Benchmark duration (s):", result["duration"]))
    lines.append(_row("Total input tokens:", result["total_input_tokens"]))
    lines.append(_row("Total generated tokens:", result["total_output_tokens"]))
    lines.append(_row("Request throughput (req/s):", result["request_throughput"]))
    if result["request_goodput"] is not None:
        lines.append(_row("Request goodput (req/s):", result["request_goodput"]))
    lines.append(_row("Output token throughput (tok/s):", result["output_throughput"]))
    lines.append(_row("Peak output token throughput (tok/s):", result["max_output_tokens_per_s"]))
    lines.append(_row("Peak concurrent requests:", result["max_concurrent_requests"]))
    lines.append(_row("Total Token throughput (tok/s):", result["total_token_throughput"]))
    for key, label, title in _SECTIONS:
        lines.append(_title(title))
        lines += _stats(result, key, label, p)
    lines += _rillet(result, p)
    lines.append("=" * WIDTH)
    return "\n".join(lines)


def _rillet(result: dict[str, Any], p: Sequence[float]) -> list[str]:
    lines = [_title("Per-chunk gaps (median / P99, ms)")]
    lines.append(
        _row("chunk gap:", f"{result['median_chunk_gap_ms']:.2f} / {result['p99_chunk_gap_ms']:.2f}")
    )
    lines.append(_title("TTFT variants (median / P99, ms)"))
    for key, label in _VARIANTS:
        if result[f"count_{key}"]:
            pair = f"{result[f'median_{key}_ms']:.2f} / {result[f'p99_{key}_ms']:.2f}"
            lines.append(_row(f"to {label}:", pair))
    lines.append(_title("Client (was it the bottleneck?)"))
    if result["offered_request_rate"] is not None:
        lines.append(_row("Offered rate (req/s):", float(result["offered_request_rate"])))
    if result["offered_request_rate"] is not None and result["achieved_request_rate"] is not None:
        lines.append(_row("Achieved send rate (req/s):", result["achieved_request_rate"]))
    if result["configured_concurrency"] is not None:
        lines.append(_row("Configured concurrency:", result["configured_concurrency"]))
    lines.append(_row("Mean real concurrency:", result["mean_concurrency"]))
    if result["offered_request_rate"] is not None:
        lines.append(
            _row(
                "Schedule lag P99 / max (ms):",
                f"{result['p99_schedule_lag_ms']:.2f} / {result['max_schedule_lag_ms']:.2f}",
            )
        )
    if result["p99_slot_wait_ms"] > 0:
        lines.append(_row("Slot wait P99 (ms, not in TTFT):", result["p99_slot_wait_ms"]))
    lines.append(_row("Dispatch P99 (ms, not in TTFT):", result["p99_dispatch_ms"]))
    lines.append(_row("SDK call to socket P99 (ms, not in TTFT):", result["p99_request_build_ms"]))
    lines.append(
        _row(
            "Event-loop lag P99 / max (ms):",
            f"{result['p99_loop_lag_ms']:.2f} / {result['max_loop_lag_ms']:.2f}",
        )
    )
    if "max_client_delay_ms" in result:
        lines.append(
            _row(
                "Client delay, socket to sinks, P99 / max (ms):",
                f"{result['p99_client_delay_ms']:.2f} / {result['max_client_delay_ms']:.2f}",
            )
        )
    lines.append(_row("Client peak RSS (MiB):", result["client_peak_rss_bytes"] / 2**20))
    lines.append(_title("Outcomes"))
    stops = ", ".join(f"{k} {v}" for k, v in sorted(result["stop_reasons"].items())) or "none"
    lines.append(_row("Stop reasons:", stops))
    lines.append(_row("Ended short of max_tokens:", result["ended_short"]))
    errors = ", ".join(f"{k} {v}" for k, v in sorted(result["error_counts"].items())) or "none"
    lines.append(_row("Errors:", errors))
    if result["cancelled"]:
        lines.append(_row("Cancelled (interrupted):", result["cancelled"]))
    lines.append(_title("Cost"))
    if result["estimated_cost_usd"] is not None:
        lines.append(_row("Estimated before the run (USD):", _usd(result["estimated_cost_usd"])))
    lines.append(_row("Actual, from usage (USD):", _usd(result["cost_usd"])))
    if "p99_ttft_error_ms" in result:
        lines.append(_title("Measurement error vs simulator truth"))
        lines.append(_row("Requests checked:", result["truth_checked"]))
        lines.append(_row("Peak concurrency, server side:", result["server_max_concurrent_requests"]))
        lines.append(_row("Content deltas lost:", result["lost_deltas"]))
        lines += _stats(result, "ttft_error", "TTFT error", p)
        for part in ("send", "receive"):
            pair = f"{result[f'median_ttft_error_{part}_ms']:.2f} / {result[f'p99_ttft_error_{part}_ms']:.2f}"
            lines.append(_row(f"of which {part} (median / P99, ms):", pair))
    return lines


def _usd(value: float) -> str:
    return "unknown" if value != value else f"{value:.4f}"
