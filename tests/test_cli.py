"""The ``rillet`` command as a user runs it: a real process, the embedded simulator, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

import pytest

from pipeline.apps.simulator import SimulatorSettings, reference_text

RILLET = [sys.executable, "-m", "pipeline.apps"]


def rillet(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the command with no API key or base URL, as on a fresh machine."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return subprocess.run(
        [*RILLET, *map(str, args)],
        cwd=cwd,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_run_writes_the_whole_report_from_the_simulator(tmp_path: Path) -> None:
    """`rillet run` with no key streams a long report to stdout and the file, and says so."""
    done = rillet("run", "--prompt", "A report on rivers.", "--max-tokens", "6000", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "using the built-in simulator" in lines[0]
    assert lines[-1].startswith("rillet: completed")
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 6000,
        "messages": [{"role": "user", "content": "A report on rivers."}],
    }
    expected = reference_text(request, SimulatorSettings())
    assert done.stdout == expected + ("" if expected.endswith("\n") else "\n")
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.startswith(expected)
    assert len(expected.split()) > 3000
    assert not list(tmp_path.glob("*.part"))


def test_run_without_a_key_streams_at_claudes_pace(tmp_path: Path) -> None:
    """The default embedded simulator is the realistic one: TTFT of at least half a second (the
    preset's 750 ms less its 30 % jitter; the simulator never sends early), and the report is on
    the prompt's topic. ``--simulator fast`` and ``RILLET_SIMULATOR=fast`` are the full-speed one."""
    env = {k: v for k, v in os.environ.items() if k != "RILLET_SIMULATOR"}
    done = subprocess.run(
        [*RILLET, "run", "--prompt", "A history of canals", "--max-tokens", "40"],
        cwd=tmp_path,
        env={k: v for k, v in env.items() if not k.startswith("ANTHROPIC_")},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "at Claude's pace, about 65 tokens/s" in lines[0]
    ttft = float(lines[-1].split("TTFT ")[1].split(" s")[0])
    assert ttft >= 0.5
    assert done.stdout.startswith("# ")
    assert "Canals" in done.stdout.splitlines()[0]
    fast = rillet("run", "--prompt", "Canals", "--max-tokens", "40", "--simulator", "fast", cwd=tmp_path)
    assert fast.returncode == 0
    assert "at full speed" in fast.stderr.splitlines()[0]
    assert "at full speed" in rillet("run", "--max-tokens", "40", cwd=tmp_path).stderr


def test_an_unknown_simulator_is_refused_in_one_line(tmp_path: Path) -> None:
    done = rillet("run", "--simulator", "slow", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "rillet: error: --simulator: unknown simulator 'slow'; expected one of claude, fast\n"
    )
    served = rillet("serve", "--port", "0", "--simulator", "slow", cwd=tmp_path)
    assert served.returncode == 2
    assert served.stderr == done.stderr
    done = rillet("run", cwd=tmp_path, env={"RILLET_SIMULATOR": "slow"})
    assert done.returncode == 2
    assert done.stderr.startswith("rillet: error: RILLET_SIMULATOR: unknown simulator 'slow'")


def test_run_uses_the_config_file(tmp_path: Path) -> None:
    """A config's prompt file (relative to the config) and sinks are honoured; --out overrides the path."""
    (tmp_path / "prompt.md").write_text("Rivers and their deltas.", encoding="utf-8")
    config = tmp_path / "job.toml"
    config.write_text(
        """
[request]
prompt_file = "prompt.md"
max_tokens = 200

[[sinks]]
type = "file"
path = "events.jsonl"
mode = "jsonl"

[[sinks]]
type = "file"
path = "ignored.md"
""",
        encoding="utf-8",
    )
    done = rillet("run", config, "--out", "out.md", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "rillet.end"
    assert (tmp_path / "out.md").read_text(encoding="utf-8").strip()
    assert not (tmp_path / "ignored.md").exists()


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        pytest.param("[request]\nmax_tokens = -1\n", "request.max_tokens", id="out-of-range"),
        pytest.param("[request]\nmodle = 'x'\n", "request.modle: Extra inputs", id="unknown-key"),
        pytest.param("[[sinks]]\ntype = 'file'\nmode = 'txt'\n", "sinks[0].mode", id="bad-enum"),
        pytest.param("[[sinks]]\ntype = 'carrier-pigeon'\n", "sinks[0]", id="unknown-sink"),
        pytest.param("[request\n", "invalid TOML", id="syntax"),
        pytest.param("[[stages]]\ntype = 'cost'\nevery_tokens = 0\n", "stages[0].every_tokens", id="stage"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, toml: str, expected: str) -> None:
    """A config mistake ends with one line naming the file and the key, exit 2, no traceback."""
    config = tmp_path / "bad.toml"
    config.write_text(toml, encoding="utf-8")
    done = rillet("run", config, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"rillet: error: {config}: ")
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_prompt_file_is_a_config_error(tmp_path: Path) -> None:
    """A prompt file that does not exist is named, exit 2."""
    done = rillet("run", "--prompt-file", "nope.md", cwd=tmp_path)
    assert done.returncode == 2
    assert "nope.md" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "fixture",
    sorted(
        p.stem
        for p in (Path(__file__).parents[1].parent / "shared" / "fixtures" / "sse" / "expected").glob(
            "*.json"
        )
    ),
)
def test_replay_writes_the_sdk_message(tmp_path: Path, fixtures_dir: Path, fixture: str) -> None:
    """`rillet replay` of every recorded stream writes the message the SDK itself accumulates."""
    out = tmp_path / "final.json"
    done = rillet("replay", fixtures_dir / f"{fixture}.sse", "--final-json", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = json.loads((fixtures_dir / "expected" / f"{fixture}.json").read_text())
    assert json.loads(out.read_text()) == expected


def test_replay_of_malformed_input_names_the_line_and_keeps_what_came_before(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    """A corrupt line: one-line error naming file and line, exit 2; earlier events reach the sinks."""
    lines = (fixtures_dir / "sdk-basic_response.sse").read_text().splitlines(keepends=True)
    corrupt_at = next(i for i, line in enumerate(lines) if "text_delta" in line) + 1
    broken = tmp_path / "broken.sse"
    broken.write_text("".join([*lines[: corrupt_at + 2], "data: {not json\n\n"]), encoding="utf-8")
    config = tmp_path / "replay.toml"
    config.write_text('[[sinks]]\ntype = "file"\npath = "events.jsonl"\nmode = "jsonl"\n', encoding="utf-8")
    done = rillet("replay", broken, "--config", config, "--final-json", tmp_path / "final.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{broken}:{corrupt_at + 3}" in done.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert any(event["type"] == "content_block_delta" for event in events)
    partial = json.loads((tmp_path / "final.json").read_text())
    assert partial["content"][0]["text"]


def test_replay_passes_unknown_event_types_through(tmp_path: Path, fixtures_dir: Path) -> None:
    """A future event type reaches the sinks untouched and the message is still accumulated."""
    text = (fixtures_dir / "sdk-basic_response.sse").read_text()
    future = 'event: message_thought\ndata: {"type":"message_thought","detail":{"x":1}}\n\n'
    first_delta = text.index("event: content_block_delta")
    recorded = tmp_path / "future.sse"
    recorded.write_text(text[:first_delta] + future + text[first_delta:], encoding="utf-8")
    config = tmp_path / "replay.toml"
    config.write_text('[[sinks]]\ntype = "file"\npath = "events.jsonl"\nmode = "jsonl"\n', encoding="utf-8")
    done = rillet("replay", recorded, "--config", config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(
        (fixtures_dir / "expected" / "sdk-basic_response.json").read_text()
    )
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    thought = next(event for event in events if event["type"] == "message_thought")
    assert thought["event"]["detail"] == {"x": 1}


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "sdk-basic_response.sse"],
        ["bench", "--num-requests", "2", "--output-tokens", "8", "--warmup", "0", "--progress", "off"],
    ],
    ids=["replay", "bench"],
)
def test_a_reader_that_left_ends_the_command_quietly(
    command: list[str], fixtures_dir: Path, tmp_path: Path, broken_pipe: TextIO
) -> None:
    """`rillet … | head`: the status a shell gives a tool killed by SIGPIPE, and no traceback."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [*RILLET, *command],
        cwd=fixtures_dir,
        env=clean,
        stdout=broken_pipe,
        stderr=subprocess.PIPE,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr
    assert "Traceback" not in done.stderr


def test_run_into_a_reader_that_left_still_completes_the_report(tmp_path: Path, broken_pipe: TextIO) -> None:
    """`rillet run | head` with no config: stdout gives up, the report is written whole all the same."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [*RILLET, "run", "--prompt", "A report on rivers.", "--max-tokens", "6000"],
        cwd=tmp_path,
        env=clean,
        stdout=broken_pipe,
        stderr=subprocess.PIPE,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("rillet: completed")
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 6000,
        "messages": [{"role": "user", "content": "A report on rivers."}],
    }
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith(reference_text(request))
