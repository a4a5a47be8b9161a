"""vLLM's and AIPerf's flag names: the same settings, and the same run, as rillet's own flags."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest

from pipeline.apps.bench import run_bench
from pipeline.apps.bench.cli import add_arguments, load_settings
from pipeline.apps.bench.settings import BenchConfig

SIM = ["--sim-ttft-ms", "5", "--sim-tokens-per-s", "4000", "--progress", "off"]

# (rillet's flags, vLLM's, AIPerf's): each triple must mean one thing.
EQUIVALENT = [
    (
        ["--num-requests", "6", "--concurrency", "2", "--input-tokens", "40", "--output-tokens", "12"],
        ["--num-prompts", "6", "--max-concurrency", "2", "--random-input-len", "40",
         "--random-output-len", "12"],
        ["--request-count", "6", "--concurrency", "2", "--isl", "40", "--osl", "12"],
    ),
    (
        ["--request-rate", "50", "--max-concurrency", "3", "--burstiness", "2", "--num-requests", "5",
         "--percentiles", "50,90", "--seed", "4", "--warmup", "1", "--goodput", "ttft:500", "tpot:50"],
        ["--request-rate", "50", "--max-concurrency", "3", "--burstiness", "2", "--num-prompts", "5",
         "--metric-percentiles", "50,90", "--seed", "4", "--warmup", "1", "--goodput", "ttft:500", "tpot:50",
         "--percentile-metrics", "ttft,tpot,itl,e2el"],
        ["--request-rate", "50", "--max-concurrency", "3", "--burstiness", "2", "--request-count", "5",
         "--metric-percentiles", "50,90", "--random-seed", "4", "--warmup-request-count", "1",
         "--goodput", "ttft:500", "tpot:50"],
    ),
    (
        ["--duration", "0.2", "--concurrency", "1", "--input-tokens", "64:8"],
        ["--duration", "0.2", "--max-concurrency", "1", "--random-input-len", "64", "--isl-stddev", "8"],
        ["--benchmark-duration", "0.2", "--concurrency", "1", "--isl", "64", "--isl-stddev", "8"],
    ),
]  # fmt: skip


def settings_of(*argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args([*argv, *SIM]))[0]


@pytest.mark.parametrize("flags", EQUIVALENT, ids=["closed", "open-capped", "duration"])
def test_aliases_give_the_same_settings(flags: tuple[list[str], ...]) -> None:
    """Each spelling parses to the very settings rillet's own flags give."""
    own, vllm, aiperf = (settings_of(*argv) for argv in flags)
    assert own == vllm == aiperf


def test_max_concurrency_without_a_rate_is_a_closed_loop() -> None:
    """vLLM sends as fast as --max-concurrency slots allow when no rate is given: a closed loop."""
    settings = settings_of("--max-concurrency", "8")
    assert settings.concurrency == [8]
    assert settings.max_concurrency is None
    assert not settings.open_loop


def test_unknown_percentile_metric_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A metric vLLM would not know is one clear line, exit 2."""
    with pytest.raises(SystemExit) as exit_:
        settings_of("--percentile-metrics", "ttft,latency")
    assert exit_.value.code == 2
    assert "--percentile-metrics: expected a comma-separated list of ttft,tpot,itl,e2el" in (
        capsys.readouterr().err
    )


FIXED = (
    "num_prompts", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_rate",
    "max_concurrency", "burstiness", "percentiles", "goodput_slos_ms", "stop_reasons",
)  # fmt: skip


@pytest.mark.anyio
async def test_aliases_give_the_same_run() -> None:
    """The same run through rillet's, vLLM's and AIPerf's spellings: every count and setting alike."""
    runs: list[dict[str, Any]] = []
    for argv in EQUIVALENT[0]:
        report = await run_bench(settings_of(*argv), out=io.StringIO(), err=io.StringIO())
        (result,) = report.results
        runs.append({key: result[key] for key in FIXED})
    assert runs[0]["completed"] == 6
    assert runs[0]["total_output_tokens"] == 6 * 12
    assert runs[0] == runs[1] == runs[2]
