"""``python -m pipeline.apps.bench``: the cost guard, Ctrl-C, the config file, JSONL prompts."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.apps.bench.cli import add_arguments, load_settings
from pipeline.apps.bench.settings import BenchConfig
from pipeline.apps.bench.workload import Workload, load_prompts
from pipeline.config import RunConfig
from pipeline.errors import InputError
from tests.bench.conftest import bench as main

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> tuple[BenchConfig, RunConfig]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(argv))


def test_max_cost_refuses_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An estimate above ``--max-cost`` stops before any request: one line, exit status 2."""
    status = main(
        ["--num-requests", "1000", "--output-tokens", "4000", "--max-cost", "0.01", "--progress", "off"]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert re.match(r"rillet: error: estimated cost \$\d+\.\d+ exceeds --max-cost \$0\.0100", err)


def test_config_file_then_flags(tmp_path: Path) -> None:
    """The ``[bench]`` section is read, flags win, and a sweep in the file yields to a rate flag."""
    config = tmp_path / "bench.toml"
    config.write_text('[bench]\nmodel = "claude-haiku-4-5"\nconcurrency = [1, 8]\nnum_requests = 50\n')
    settings, _ = parse(str(config), "--request-rate", "5,10", "--percentiles", "50,90")
    assert settings.model == "claude-haiku-4-5"
    assert settings.points == [5.0, 10.0]
    assert settings.open_loop
    assert settings.percentiles == [50.0, 90.0, 99.0]


def test_shipped_config_is_valid() -> None:
    """``config/bench.toml`` loads as it is."""
    settings, _ = parse(str(REPO / "config" / "bench.toml"))
    assert settings.points


def test_bad_bench_key_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in ``[bench]`` is one line naming the file and the key, exit 2."""
    config = tmp_path / "bench.toml"
    config.write_text("[bench]\nconcurrencyy = 4\n")
    assert main([str(config)]) == 2
    assert f"{config}: bench.concurrencyy" in capsys.readouterr().err


def test_jsonl_prompts(tmp_path: Path) -> None:
    """``prompt`` or ``messages`` per line; a bad line is named by its number."""
    good = tmp_path / "p.jsonl"
    good.write_text(
        '{"prompt": "hello"}\n\n{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}\n'
    )
    workload = Workload(model="m", max_tokens=100, prompts=load_prompts(good))
    assert workload.request(0)["messages"] == [{"role": "user", "content": "hello"}]
    assert workload.request(1)["max_tokens"] == 9
    assert workload.request(2)["max_tokens"] == 100
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: expected a non-empty 'prompt'"):
        load_prompts(bad)


def test_synthetic_prompts_are_seeded_and_sized() -> None:
    """Same seed and index, same prompt; the size follows the mean and spread asked for."""
    workload = Workload(model="m", max_tokens=10, input_tokens=300, input_tokens_sd=30, seed=1)
    assert workload.request(3) == workload.request(3) != workload.request(4)
    sizes = [workload.planned_input_tokens(i) for i in range(400)]
    assert 290 < sum(sizes) / len(sizes) < 310
    assert min(sizes) < 270
    assert max(sizes) > 330


def test_ctrl_c_writes_the_results_of_what_completed(tmp_path: Path) -> None:
    """SIGINT mid-run: sending stops, in-flight requests are cancelled, results are still written."""
    out = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    cmd = [
        sys.executable, "-m", "pipeline.apps", "bench", "--num-requests", "100000", "--concurrency", "4",
        "--output-tokens", "16", "--sim-ttft-ms", "5", "--sim-tokens-per-s", "0", "--warmup", "0",
        "--result-json", str(out), "--save-requests", str(tmp_path / "r.jsonl"), "--progress", "on",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while not re.search(rb": (\d{2,})/100000 done", seen):
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, seen.decode(errors="replace")
        seen += chunk
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    result = json.loads(out.read_text())
    assert result["interrupted"] is True
    assert 10 <= result["completed"] < 100000
    assert result["completed"] + result["failed"] == len((tmp_path / "r.jsonl").read_text().splitlines())
    assert b"Serving Benchmark Result" in stdout
