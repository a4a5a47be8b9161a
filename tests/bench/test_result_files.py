"""``--result-dir``: one vLLM-shaped object per point, read the way vLLM's own tools read results.

The reading mirrors vLLM's ``benchmarks/sweep``: ``plot.py`` and ``plot_pareto.py`` load every
``**/summary.json`` under a directory as a list of run dicts, turn ``"inf"`` strings into floats,
and read ``request_throughput`` and ``p99_e2el_ms`` (its default axes), ``output_throughput`` and
the user count from ``max_concurrency`` (else ``request_rate``, else ``max_concurrent_requests``)
as numbers; ``serve.py`` loads each run's own file as one dict and updates it. The types are
those ``serve.py`` writes in its result JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.bench.conftest import bench as main

SIM = ["--sim-ttft-ms", "5", "--sim-tokens-per-s", "4000", "--progress", "off"]

NUMBER = (int, float)
VLLM_TYPES: dict[str, tuple[type, ...]] = {
    "date": (str,), "endpoint_type": (str,), "backend": (str,), "label": (str, type(None)),
    "model_id": (str,), "tokenizer_id": (str, type(None)), "num_prompts": (int,),
    "request_rate": (float, str), "burstiness": NUMBER, "max_concurrency": (int, type(None)),
    "duration": NUMBER, "completed": (int,), "failed": (int,), "total_input_tokens": (int,),
    "total_output_tokens": (int,), "request_throughput": NUMBER, "request_goodput": (*NUMBER, type(None)),
    "output_throughput": NUMBER, "total_token_throughput": NUMBER, "max_output_tokens_per_s": NUMBER,
    "max_concurrent_requests": (int,), "input_lens": (list,), "output_lens": (list,), "ttfts": (list,),
    "itls": (list,), "latencies": (list,), "start_times": (list,), "errors": (list,),
}  # fmt: skip
METRICS = [f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "std", "p99")]


def check_vllm_types(run: dict[str, Any]) -> None:
    for key, types in VLLM_TYPES.items():
        assert isinstance(run[key], types), (key, run[key])
    for key in METRICS:
        assert isinstance(run[key], float), key
    n = run["num_prompts"]
    assert all(isinstance(v, int) for v in run["input_lens"] + run["output_lens"])
    assert all(isinstance(v, float) for v in run["ttfts"] + run["latencies"] + run["start_times"])
    assert all(isinstance(gaps, list) and all(isinstance(g, float) for g in gaps) for gaps in run["itls"])
    assert all(isinstance(e, str) for e in run["errors"])
    assert {len(run[k]) for k in ("input_lens", "output_lens", "ttfts", "itls", "latencies", "errors")} == {n}


def vllm_sweep_load(output_dir: Path) -> list[dict[str, Any]]:
    """vLLM's sweep/plot.py loading: every summary.json, a list each, "inf" strings made floats."""
    data = [run for path in output_dir.rglob("**/summary.json") for run in json.loads(path.read_bytes())]
    return [{k: float(v) if v in ("inf", "-inf", "nan") else v for k, v in run.items()} for run in data]


def test_a_sweep_writes_one_vllm_object_per_point(tmp_path: Path) -> None:
    """Two points: two files named by their load point, a summary vLLM's sweep tools can read."""
    out = tmp_path / "results"
    argv = ["--num-prompts", "4", "--concurrency", "1,2", "--output-tokens", "8", "--save-result"]
    assert main([*argv, "--result-dir", str(out), "--label", "base", *SIM]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert "summary.json" in files
    (one,) = [f for f in files if "-infqps-concurrency1-" in f]
    (two,) = [f for f in files if "-infqps-concurrency2-" in f]
    assert one.startswith("base-")
    assert one.endswith(".json")
    for name, concurrency in ((one, 1), (two, 2)):
        run = json.loads((out / name).read_bytes())
        assert isinstance(run, dict)  # vLLM's sweep serve.py: json.load, then run_data.update(...)
        run.update({"run_number": 0})
        check_vllm_types(run)
        assert run["max_concurrency"] == concurrency
        assert run["errors"] == [""] * 4
        assert run["error_counts"] == {}
        assert run["tokenizer_id"] == run["model_id"]
    summary = vllm_sweep_load(out)
    assert [run["max_concurrency"] for run in summary] == [1, 2]
    assert [run["result_file"] for run in summary] == [one, two]
    for run in summary:
        assert math.isinf(run["request_rate"])
        # sweep/plot.py's default axes and plot_pareto.py's throughput and user count
        assert float(run["request_throughput"]) > 0
        assert float(run["p99_e2el_ms"]) > 0
        assert float(run["output_throughput"]) / float(run["max_concurrency"]) > 0
        assert "ttfts" not in run  # the summary lists points; the samples stay in each point's file


def test_result_filename_names_one_point_and_marks_a_sweep(tmp_path: Path) -> None:
    """--result-filename is the file for one point; a sweep adds the load point to it."""
    base = ["--num-prompts", "2", "--output-tokens", "4", "--result-dir", str(tmp_path)]
    assert main([*base, "--request-rate", "40", "--result-filename", "one.json", *SIM]) == 0
    assert json.loads((tmp_path / "one.json").read_bytes())["request_rate"] == 40.0
    sweep = tmp_path / "sweep"
    argv = [*base, "--result-dir", str(sweep), "--request-rate", "40,80", "--max-concurrency", "2"]
    assert main([*argv, "--result-filename", "r.json", *SIM]) == 0
    assert sorted(p.name for p in sweep.iterdir()) == [
        "r-40.0qps-concurrency2.json", "r-80.0qps-concurrency2.json", "summary.json",
    ]  # fmt: skip


def test_unwritable_result_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A result directory that cannot be made: one line naming it, exit 2."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["--num-prompts", "1", "--output-tokens", "4", "--result-dir", str(blocker / "d"), *SIM]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"rillet: error: cannot write '{blocker / 'd'}")
