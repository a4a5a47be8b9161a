"""``rillet bench`` (and ``python -m pipeline.bench``): flags over the ``[bench]`` section over defaults."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from pipeline.bench.run import run_bench
from pipeline.bench.settings import BenchSettings
from pipeline.config import RunConfig, describe_validation_error, parse_config, read_toml
from pipeline.errors import ConfigError
from pipeline.sink import SinkSpec


def _list(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> list[float] | list[int]:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None

    return parse


def _tokens(text: str) -> tuple[int, float]:
    mean, _, spread = text.partition(":")
    try:
        return int(mean), float(spread or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N:SD, got {text!r}") from None


def _slo(text: str) -> tuple[str, float]:
    name, _, ms = text.partition(":")
    try:
        return name, float(ms)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC:MS such as ttft:500, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", nargs="?", type=Path, help="a TOML file with a [bench] section, e.g. config/bench.toml"
    )
    parser.add_argument("--model", help="the model to ask")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--num-requests", type=int, help="measured requests per point (default 100)")
    count.add_argument("--duration", type=float, help="seconds of sending per point")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=_list(int), help="closed loop: C or a sweep C1,C2,...")
    load.add_argument(
        "--request-rate", type=_list(float), help="open loop: R req/s (inf: all at once) or R1,R2,..."
    )
    parser.add_argument(
        "--burstiness", type=float, help="gamma shape of inter-arrivals: 1 Poisson, <1 burstier"
    )
    parser.add_argument("--max-concurrency", type=int, help="open loop: cap on requests in flight")
    parser.add_argument(
        "--warmup", type=int, help="unmeasured requests first (default: one per slot, up to 64)"
    )
    parser.add_argument("--input-tokens", type=_tokens, help="synthetic prompt size N or N:SD")
    parser.add_argument("--output-tokens", type=int, help="max_tokens of each request")
    parser.add_argument(
        "--prompts", type=Path, help="JSONL prompts: one object a line with prompt or messages"
    )
    parser.add_argument("--seed", type=int, help="seed of prompts and arrivals")
    parser.add_argument(
        "--goodput", nargs="+", type=_slo, metavar="METRIC:MS", help="SLOs: ttft:MS tpot:MS e2el:MS"
    )
    parser.add_argument("--percentiles", type=_list(float), help="e.g. 50,90,95,99 (p99 is always reported)")
    parser.add_argument("--workers", type=int, help="client processes, each with its own event loop")
    parser.add_argument("--result-json", type=Path, help="write vLLM-keyed results here")
    parser.add_argument("--save-requests", type=Path, help="write one JSON line per request here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the distributions (and sweep curves)")
    parser.add_argument("--max-cost", type=float, help="refuse to start when the estimated USD exceeds this")
    parser.add_argument(
        "--truth", action=argparse.BooleanOptionalAction, help="check against simulator truth"
    )
    parser.add_argument("--progress", choices=("auto", "on", "off"), help="live progress line on stderr")
    parser.add_argument(
        "--wire",
        action=argparse.BooleanOptionalAction,
        help="stamp on wire times (default); --no-wire: the SDK's own transport, user-space stamps",
    )
    parser.add_argument("--metrics-address", help="serve Prometheus metrics on HOST:PORT during the run")
    parser.add_argument("--sim-scenario", help="embedded simulator: scenario (e.g. rate_limited, overloaded)")
    parser.add_argument("--sim-ttft-ms", type=float, help="embedded simulator: TTFT in ms")
    parser.add_argument("--sim-tokens-per-s", type=float, help="embedded simulator: output tokens per second")


_FLAGS = (
    "model",
    "num_requests",
    "duration",
    "concurrency",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "warmup",
    "output_tokens",
    "prompts",
    "seed",
    "percentiles",
    "workers",
    "result_json",
    "save_requests",
    "plot",
    "max_cost",
    "truth",
    "progress",
    "wire",
    "metrics_address",
)


def load_settings(args: argparse.Namespace) -> tuple[BenchSettings, RunConfig]:
    """The ``[bench]`` section of the file (if any) with the flags applied, and the rest of the file."""
    data: dict[str, Any] = {}
    path: Path = args.config or Path("<defaults>")
    if args.config is not None:
        data = read_toml(args.config)
    bench: dict[str, Any] = dict(data.pop("bench", {}))
    bench.pop("mode", None)
    if args.config is not None and bench.get("prompts") is not None:
        bench["prompts"] = str((args.config.parent / bench["prompts"]).resolve())
    if ("concurrency" in bench and args.request_rate is not None) or (
        "request_rate" in bench and args.concurrency
    ):
        bench.pop("concurrency", None)
        bench.pop("request_rate", None)
    if ("num_requests" in bench and args.duration is not None) or ("duration" in bench and args.num_requests):
        bench.pop("num_requests", None)
        bench.pop("duration", None)
    bench |= {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    if args.input_tokens is not None:
        bench["input_tokens"], bench["input_tokens_sd"] = args.input_tokens
    if args.goodput is not None:
        bench["goodput"] = dict(args.goodput)
    simulator = dict(bench.get("simulator", {}))
    for flag, key in (
        ("sim_scenario", "scenario"),
        ("sim_ttft_ms", "ttft_ms"),
        ("sim_tokens_per_s", "tokens_per_s"),
    ):
        if getattr(args, flag) is not None:
            simulator[key] = getattr(args, flag)
    bench["simulator"] = simulator
    try:
        settings = BenchSettings.model_validate({"bench": bench}["bench"])
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(path, exc).replace(f"{path}: ", f"{path}: bench.", 1)
        ) from None
    return settings, parse_config(data, path)


def run(args: argparse.Namespace) -> int:
    """The subcommand: exit 0, 130 when interrupted; errors propagate to the CLI's handler."""
    settings, config = load_settings(args)
    sinks: list[SinkSpec] = []
    if settings.metrics_address:
        from sinks.prometheus import PrometheusSink

        sinks.append(SinkSpec(PrometheusSink(address=settings.metrics_address)))
    report = anyio.run(lambda: run_bench(settings, base_url=config.api.base_url, sinks=sinks))
    return report.status


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``bench`` to the ``rillet`` command."""
    parser = commands.add_parser(
        "bench",
        description="Load the Messages API (or the embedded simulator) and measure every stream.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.bench``: the same as ``rillet bench``."""
    from pipeline import cli  # the top-level command imports this module

    return cli.main(["bench", *(sys.argv[1:] if argv is None else argv)])
