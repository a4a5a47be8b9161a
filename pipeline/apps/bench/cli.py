"""``rillet bench``: flags over the ``[bench]`` section over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from pipeline.apps.bench.run import run_bench
from pipeline.apps.bench.settings import BenchConfig
from pipeline.config import RunConfig, describe_validation_error, parse_config, read_toml
from pipeline.errors import ConfigError
from pipeline.sink import SinkSpec

PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")
"""What vLLM's ``--percentile-metrics`` may name; rillet reports every one of them anyway."""


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


def _metrics(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(PERCENTILE_METRICS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {','.join(PERCENTILE_METRICS)}, got {text!r}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        type=Path,
        help="a TOML file with a [bench] section (e.g. config/bench.toml); "
        "or report DIR..., compare A B, plot DIR... to read saved results",
    )
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help="the model to ask")
    count = parser.add_mutually_exclusive_group()
    count.add_argument(
        "--num-requests",
        "--num-prompts",
        "--request-count",
        type=int,
        help="measured requests per point (default 100)",
    )
    count.add_argument("--duration", "--benchmark-duration", type=float, help="seconds of sending per point")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=_list(int), help="closed loop: C or a sweep C1,C2,...")
    load.add_argument(
        "--request-rate", type=_list(float), help="open loop: R req/s (inf: all at once) or R1,R2,..."
    )
    parser.add_argument(
        "--burstiness", type=float, help="gamma shape of inter-arrivals: 1 Poisson, <1 burstier"
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        help="open loop: cap on requests in flight; without --request-rate, a closed loop of N (as vLLM)",
    )
    parser.add_argument(
        "--warmup",
        "--warmup-request-count",
        type=int,
        help="unmeasured requests first (default: one per slot, up to 64)",
    )
    parser.add_argument("--input-tokens", type=_tokens, help="synthetic prompt size N or N:SD")
    parser.add_argument("--random-input-len", "--isl", type=int, help="synthetic prompt size N")
    parser.add_argument("--isl-stddev", type=float, help="spread (SD) of the synthetic prompt size")
    parser.add_argument(
        "--output-tokens", "--random-output-len", "--osl", type=int, help="max_tokens of each request"
    )
    parser.add_argument(
        "--prompts", type=Path, help="JSONL prompts: one object a line with prompt or messages"
    )
    parser.add_argument("--seed", "--random-seed", type=int, help="seed of prompts and arrivals")
    parser.add_argument(
        "--goodput", nargs="+", type=_slo, metavar="METRIC:MS", help="SLOs: ttft:MS tpot:MS e2el:MS"
    )
    parser.add_argument(
        "--percentiles",
        "--metric-percentiles",
        type=_list(float),
        help="e.g. 50,90,95,99 (p99 is always reported)",
    )
    parser.add_argument(
        "--percentile-metrics",
        type=_metrics,
        help="vLLM's choice of metrics, e.g. ttft,tpot,itl,e2el: accepted; rillet reports all four",
    )
    parser.add_argument("--workers", type=int, help="client processes, each with its own event loop")
    parser.add_argument("--result-json", type=Path, help="write vLLM-keyed results here (one file)")
    parser.add_argument(
        "--save-result",
        action="store_true",
        default=None,
        help="write one vLLM-shaped result file per point (in --result-dir, default .)",
    )
    parser.add_argument(
        "--result-dir", type=Path, help="one vLLM-shaped JSON file per point, and summary.json"
    )
    parser.add_argument("--result-filename", help="the point's file name (a sweep adds the load point)")
    parser.add_argument("--label", help="names the run in file names, report, compare and plot")
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
    parser.add_argument(
        "--zoom", action="store_true", default=None, help="plots: latency axes fit the data, not from zero"
    )
    saved = parser.add_argument_group("report, compare, plot (saved results: a --result-dir or a file)")
    saved.add_argument("-o", "--output", type=Path, help=f"plot: the PNG to write (default {PLOT_FILE})")
    saved.add_argument(
        "--alpha", type=float, default=0.05, help="compare: significance level of the test (default 0.05)"
    )
    saved.add_argument(
        "--min-change",
        type=float,
        default=5.0,
        help="compare: smallest shift of the median, in %%, that counts as a change (default 5)",
    )


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
    "save_result",
    "result_dir",
    "result_filename",
    "label",
    "save_requests",
    "plot",
    "max_cost",
    "truth",
    "progress",
    "wire",
    "metrics_address",
    "zoom",
)


def load_settings(args: argparse.Namespace) -> tuple[BenchConfig, RunConfig]:
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
    if args.random_input_len is not None:
        bench["input_tokens"] = args.random_input_len
    if args.isl_stddev is not None:
        bench["input_tokens_sd"] = args.isl_stddev
    if args.max_concurrency is not None and bench.get("request_rate") is None:
        # vLLM's --max-concurrency N without a rate sends as fast as N slots allow: a closed loop of N.
        bench["concurrency"] = [bench.pop("max_concurrency")]
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
        settings = BenchConfig.model_validate({"bench": bench}["bench"])
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(path, exc).replace(f"{path}: ", f"{path}: bench.", 1)
        ) from None
    return settings, parse_config(data, path)


def run(args: argparse.Namespace) -> int:
    """The subcommand: exit 0, 130 when interrupted; errors propagate to the CLI's handler."""
    tool = str(args.config) if args.config is not None else None
    if tool in TOOLS:
        return saved_results(tool, args)
    if args.paths:
        raise ConfigError(
            f"unexpected argument {str(args.paths[0])!r}: give one CONFIG file, "
            "or report DIR..., compare A B, plot DIR..."
        )
    settings, config = load_settings(args)
    sinks: list[SinkSpec] = []
    if settings.metrics_address:
        from sinks.prometheus import PrometheusSink

        sinks.append(SinkSpec(PrometheusSink(address=settings.metrics_address)))
    report = anyio.run(lambda: run_bench(settings, base_url=config.api.base_url, sinks=sinks))
    return report.status


TOOLS = ("report", "compare", "plot")
PLOT_FILE = Path("bench-plot.png")


def saved_results(tool: str, args: argparse.Namespace) -> int:
    """``report DIR...``, ``compare A B``, ``plot DIR...``: exit 0; a bad path or file is one line."""
    from pipeline.apps.bench.files import load_run

    if not args.paths:
        raise ConfigError(f"bench {tool}: give at least one results directory or file")
    if tool == "compare" and len(args.paths) != 2:
        raise ConfigError(
            f"bench compare: give two results directories or files (A B), got {len(args.paths)}"
        )
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha: expected a level between 0 and 1, got {args.alpha}")
    if not args.min_change >= 0:
        raise ConfigError(f"--min-change: expected a percentage >= 0, got {args.min_change}")
    runs = [load_run(path) for path in args.paths]
    if tool == "plot":
        from pipeline.apps.bench.plot import plot

        output = args.output or PLOT_FILE
        plot(runs, output, zoom=bool(args.zoom))
        print(f"wrote {output}")
        return 0
    from pipeline.apps.bench.tables import compare, report

    if tool == "report":
        report(runs)
    else:
        compare(runs[0], runs[1], alpha=args.alpha, floor=args.min_change / 100)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``bench`` to the ``rillet`` command."""
    parser = commands.add_parser(
        "bench",
        description="Load the Messages API (or the embedded simulator) and measure every stream.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
