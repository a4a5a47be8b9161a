"""``rillet replay`` on anything: arbitrary bytes, and arbitrary JSON in valid SSE framing.

Whatever the recording holds, the command ends with a status and at most one line naming the
problem, never an exception: 0 for a complete message, 2 for bad input, 1 for a well-formed
recording of a stream that failed (an ``error`` event) or was cut off before ``message_stop``. Run
in-process through the CLI's own ``main`` (a process per example would take minutes), with a text
and a JSON-lines file sink, so the sinks see every event the stages let through.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.apps.cli import main
from tests.conftest import FIXTURES

SINKS = """
[[sinks]]
type = "file"
path = "report.md"

[[sinks]]
type = "file"
path = "events.jsonl"
mode = "jsonl"
"""

BASIC_START = (FIXTURES / "sdk-basic_response.sse").read_text(encoding="utf-8")
BASIC_START = BASIC_START[: BASIC_START.index("event: content_block_delta")]
"""A real message_start and content_block_start, so later events reach the stages' deeper paths."""

EVENT_TYPES = [
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "error",
    "ping",
    "message_thought",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def tagged(types: list[str], fields: list[str]) -> st.SearchStrategy[dict[str, object]]:
    """An object shaped like the API's blocks or deltas, its fields of any JSON type."""
    return st.fixed_dictionaries(
        {"type": st.sampled_from(types) | json_values},
        optional={name: json_values for name in fields},
    )


blocks = tagged(
    ["text", "tool_use", "thinking", "redacted_thinking", "hologram"], ["text", "input", "name", "id"]
)
deltas = tagged(
    [
        "text_delta",
        "input_json_delta",
        "thinking_delta",
        "signature_delta",
        "citations_delta",
        "hologram_delta",
    ],
    ["text", "partial_json", "thinking", "signature", "citation"],
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "model": json_values,
        "content": st.lists(blocks, max_size=2) | json_values,
        "usage": st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), json_values)
        | json_values,
        "stop_reason": json_values,
    },
)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={
        "index": st.integers(0, 2) | json_values,
        "delta": deltas | json_values,
        "content_block": blocks | json_values,
        "message": messages | json_values,
        "usage": st.fixed_dictionaries({}, optional={"output_tokens": json_values}) | json_values,
        "error": json_values,
    },
)


def framed(event: dict[str, object]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        path = Path(name)
        (path / "replay.toml").write_text(SINKS, encoding="utf-8")
        yield path


def replay(folder: Path, recording: bytes) -> tuple[int, str]:
    """``rillet replay`` of ``recording``: its status and its stderr."""
    path = folder / "rec.sse"
    path.write_bytes(recording)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.chdir(folder):
        status = main(["replay", str(path), "--config", "replay.toml", "--final-json", "final.json"])
    gc.unfreeze()  # main freezes what start-up built; here that would keep every example's garbage
    return status, stderr.getvalue()


def check(status: int, stderr: str) -> None:
    assert status in (0, 1, 2), stderr
    assert stderr.count("rillet: error:") == (status != 0), stderr
    assert "Traceback" not in stderr


FIXTURE_CHECK = HealthCheck.function_scoped_fixture
"""The folder is reused across examples on purpose: each replay overwrites its files."""


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[FIXTURE_CHECK])
@given(recording=st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes(folder: Path, recording: bytes) -> None:
    check(*replay(folder, recording))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[FIXTURE_CHECK])
@given(after_start=st.booleans(), body=st.lists(events, max_size=6))
def test_arbitrary_json_in_valid_framing(
    folder: Path, after_start: bool, body: list[dict[str, object]]
) -> None:
    recording = (BASIC_START if after_start else "") + "".join(framed(event) for event in body)
    check(*replay(folder, recording.encode()))
