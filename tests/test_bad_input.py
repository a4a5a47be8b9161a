"""Every bad input, however it arrives, gets one line naming it, exit status 2 and no traceback.

One table: each row is a real ``rillet`` process with its arguments, environment and files, the
text its first stderr line must hold, and, where output existed before the bad part, what must
have been kept. Rows run offline: nothing here may reach the API (no key, no base URL, unless a
row sets one that nothing listens on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, clean_environment
from tests.scale.scale_harness import RedisServer

RILLET = [sys.executable, "-m", "pipeline.apps"]
BASIC = (FIXTURES / "sdk-basic_response.sse").read_text(encoding="utf-8")
"""A recorded stream that starts a message and a text block and streams text into it."""
BASIC_LINES = BASIC.count("\n")
MESSAGE_START = BASIC[: BASIC.index("event: content_block_start")]
TEXT_STARTED = BASIC[: BASIC.index("event: content_block_stop")]
"""The stream up to its first block's stop: a message with some text, and every line ends."""


def event(name: str, data: object) -> str:
    """One SSE event, its data given as JSON text or as a value to encode."""
    return f"event: {name}\ndata: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def line_of(text: str) -> int:
    """The line the next event's data will be on, after ``text`` and an ``event:`` line."""
    return text.count("\n") + 2


Check = Callable[[Path, subprocess.CompletedProcess[str]], None]


def partial_text(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> None:
    """The message so far was written, with the text that came before the bad event."""
    message = json.loads((tmp_path / "final.json").read_text(encoding="utf-8"))
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"], message


def partial_start(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> None:
    """The message_start came before the bad event: its id is in the partial message."""
    message = json.loads((tmp_path / "final.json").read_text(encoding="utf-8"))
    assert message["id"].startswith("msg_"), message


def no_final_json(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> None:
    """Refused before the replay began: nothing was written where the message would go."""
    assert not done.stdout
    assert not (tmp_path / "final.json").exists()


def nothing_sent(tmp_path: Path, done: subprocess.CompletedProcess[str]) -> None:
    """Refused before any request: the embedded simulator was never started."""
    assert "built-in simulator" not in done.stderr


@dataclass(frozen=True)
class Row:
    """One bad input: ``files`` are written into the working folder first (text, or bytes)."""

    id: str
    argv: tuple[str, ...]
    expect: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    kept: Check | None = None
    status: int = 2
    setup: Callable[[Path], None] | None = None
    """Makes further files in the working folder, such as a large sparse one."""
    line: int = 0
    """The stderr line that names the problem: ``bench`` prints its cost estimate first."""
    """2 for bad input; 1 for a well-formed recording of a stream that failed, as ``run`` exits."""


ROWS = [
    # 1. Command-line values pass the config's own rules.
    Row("run max-tokens 0", ("run", "--max-tokens", "0"), "--max-tokens: ", kept=nothing_sent),
    Row("run max-tokens -5", ("run", "--max-tokens", "-5"), "greater than or equal to 1", kept=nothing_sent),
    Row("run model empty", ("run", "--model", ""), "--model: ", kept=nothing_sent),
    Row("run prompt empty", ("run", "--prompt", ""), "--prompt: ", kept=nothing_sent),
    Row("submit max-tokens 0", ("submit", "--max-tokens", "0"), "--max-tokens: "),
    Row("submit max-tokens -5", ("submit", "--max-tokens", "-5"), "--max-tokens: "),
    Row("submit model empty", ("submit", "--model", ""), "--model: "),
    Row(
        "config prompt empty",
        ("run", "job.toml"),
        "job.toml: request.prompt: ",
        files={"job.toml": '[request]\nprompt = ""\n'},
        kept=nothing_sent,
    ),
    Row(
        "config prompt blank",
        ("run", "job.toml"),
        "job.toml: request.prompt: ",
        files={"job.toml": '[request]\nprompt = "  \\n"\n'},
        kept=nothing_sent,
    ),
    Row(
        "config max_tokens 0",
        ("run", "job.toml"),
        "job.toml: request.max_tokens: ",
        files={"job.toml": "[request]\nmax_tokens = 0\n"},
        kept=nothing_sent,
    ),
    Row(
        "file sink path empty",
        ("run", "job.toml"),
        "job.toml: sinks[0].path: ",
        files={"job.toml": '[[sinks]]\ntype = "file"\npath = ""\n'},
        kept=nothing_sent,
    ),
    Row(
        "file sink path a folder name",
        ("replay", "rec.sse", "--config", "job.toml"),
        "job.toml: sinks[0].path: ",
        files={"rec.sse": BASIC, "job.toml": '[[sinks]]\ntype = "file"\npath = "out/.."\n'},
    ),
]

NO_KEY = "ANTHROPIC_BASE_URL is set (http://127.0.0.1:9) but no key is: set ANTHROPIC_API_KEY"
ROWS += [
    # 2. A base URL without a key.
    Row("run base URL without key", ("run",), NO_KEY, env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}),
    Row(
        "bench base URL without key",
        ("bench", "--num-requests", "1", "--output-tokens", "8", "--warmup", "0", "--progress", "off"),
        NO_KEY,
        env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"},
        line=1,
    ),
    Row(
        "run config base_url without key",
        ("run", "job.toml"),
        "api.base_url is set (http://127.0.0.1:9) but no key is",
        files={"job.toml": '[api]\nbase_url = "http://127.0.0.1:9"\n'},
    ),
]


def sparse(size: int) -> Callable[[Path], None]:
    """Makes ``big.md`` of ``size`` bytes without writing them (a sparse file): cheap on any disk."""

    def make(folder: Path) -> None:
        with (folder / "big.md").open("wb") as file:
            file.truncate(size)

    return make


ROWS += [
    # 6. A prompt over the Messages API's 32 MB request limit is refused before it is sent or read whole.
    Row(
        "run prompt file of 200 MB",
        ("run", "--prompt-file", "big.md"),
        "big.md' is 200,000,000 bytes; the Messages API accepts requests of at most 32,000,000",
        setup=sparse(200_000_000),
        kept=nothing_sent,
    ),
    Row(
        "submit prompt file of 33 MB",
        ("submit", "--prompt-file", "big.md"),
        "is 33,000,000 bytes; the Messages API accepts requests of at most 32,000,000",
        setup=sparse(33_000_000),
    ),
    Row(
        "run config prompt of 33 MB",
        ("run", "job.toml"),
        "request: the request would be 33,000,",
        files={"job.toml": f'[request]\nprompt = "{"x" * 33_000_000}"\n'},
        kept=nothing_sent,
    ),
]

ROWS += [
    # 5. Servers and connections: BUSY is a port this test listens on, REDIS a real redis-server's URL.
    Row("simulate on a busy port", ("simulate", "--port", "BUSY"), "cannot listen on 127.0.0.1:BUSY"),
    Row("serve on a busy port", ("serve", "--port", "BUSY"), "cannot listen on 127.0.0.1:BUSY", line=1),
    Row(
        "worker metrics on a busy port",
        ("worker", "--redis", "REDIS/0", "--metrics-port", "BUSY"),
        # --metrics-port is served by the worker's prometheus sink, which names itself and the port.
        "sink 'prometheus': cannot listen on 127.0.0.1:BUSY",
    ),
    Row(
        "run with a prometheus sink on a busy port",
        ("run", "job.toml"),
        "sink 'prometheus': cannot listen on 127.0.0.1:BUSY",
        files={"job.toml": '[[sinks]]\ntype = "prometheus"\naddress = "127.0.0.1:BUSY"\n'},
        line=1,
    ),
    Row(
        "replica metrics on a busy port",
        ("serve", "--port", "0", "--redis", "REDIS/0", "--metrics-port", "BUSY"),
        "--metrics-port: cannot listen on 127.0.0.1:BUSY",
    ),
    Row("jobs --redis notaurl", ("jobs", "--redis", "notaurl"), "--redis: 'notaurl' is not a Redis URL"),
    Row("submit --redis notaurl", ("submit", "--redis", "notaurl"), "--redis: 'notaurl' is not a Redis URL"),
    Row(
        "serve --redis notaurl",
        ("serve", "--port", "0", "--redis", "notaurl"),
        "--redis: 'notaurl' is not a Redis URL",
    ),
    Row(
        "config [redis] url notaurl",
        ("worker", "job.toml"),
        "job.toml: [redis]: url: Value error, 'notaurl' is not a Redis URL",
        files={"job.toml": '[redis]\nurl = "notaurl"\n'},
    ),
    Row(
        "jobs --redis database 99",
        ("jobs", "--redis", "REDIS/99"),
        "Redis at 'REDIS/99' refused the connection: DB index is out of range",
    ),
    Row(
        "worker --redis database 99",
        ("worker", "--redis", "REDIS/99"),
        "Redis at 'REDIS/99' refused the connection: DB index is out of range",
    ),
]


def replay_row(
    id: str, recording: str, expect: str, kept: Check | None = partial_text, status: int = 2
) -> Row:
    """``rillet replay rec.sse --final-json final.json`` of the given recording."""
    argv = ("replay", "rec.sse", "--final-json", "final.json")
    return Row(id, argv, expect, files={"rec.sse": recording}, kept=kept, status=status)


DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "more"}}
TEXT_STOPPED = TEXT_STARTED + event("content_block_stop", {"type": "content_block_stop", "index": 0})
ROWS += [
    # 3. Recordings whose events are well-formed SSE but wrongly shaped, or that end oddly.
    replay_row(
        "replay index zero",
        TEXT_STARTED + event("content_block_delta", DELTA | {"index": "zero"}),
        f"rec.sse:{line_of(TEXT_STARTED)}: event 'content_block_delta': index: ",
    ),
    replay_row(
        "replay delta 5",
        TEXT_STARTED + event("content_block_delta", DELTA | {"delta": 5}),
        f"rec.sse:{line_of(TEXT_STARTED)}: event 'content_block_delta': delta: ",
    ),
    replay_row(
        "replay message null",
        event("message_start", {"type": "message_start", "message": None}),
        "rec.sse:2: event 'message_start': message: ",
        kept=None,
    ),
    replay_row(
        "replay content 5",
        event("message_start", {"type": "message_start", "message": {"id": "msg_1", "content": 5}}),
        "rec.sse:2: event 'message_start': message.content: ",
        kept=None,
    ),
    replay_row(
        "replay output_tokens many",
        TEXT_STOPPED
        + event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": "many"},
            },
        ),
        f"rec.sse:{line_of(TEXT_STOPPED)}: event 'message_delta': usage.output_tokens: ",
    ),
    replay_row(
        "replay JSON nested 100,000 deep",
        TEXT_STARTED
        + event("content_block_delta", '{"type": "x", "a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        f"rec.sse:{line_of(TEXT_STARTED)}: the data of event 'content_block_delta' is nested too deeply",
    ),
    replay_row(
        "replay delta without a block start",
        MESSAGE_START + event("content_block_delta", DELTA),
        f"rec.sse:{line_of(MESSAGE_START)}: 'content_block_delta' for block 0, which no",
        kept=partial_start,
    ),
    replay_row(
        "replay delta before message_start",
        event("content_block_delta", DELTA),
        "rec.sse:2: 'content_block_delta' before any 'message_start'",
        kept=None,
    ),
    replay_row("replay empty file", "", "rec.sse: no 'message_start' event", kept=no_final_json),
    replay_row(
        "replay error event",
        TEXT_STARTED
        + event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        f"overloaded_error: Overloaded (rec.sse:{line_of(TEXT_STARTED)})",
        status=1,
    ),
    replay_row("replay ends before message_stop", TEXT_STARTED, "rec.sse: the stream ended before", status=1),
    Row(
        "replay line over --max-line-bytes",
        ("replay", "rec.sse", "--final-json", "final.json", "--max-line-bytes", "1000"),
        f"rec.sse:{line_of(TEXT_STARTED)}: line longer than 1000 bytes",
        files={"rec.sse": TEXT_STARTED + event("content_block_delta", DELTA | {"pad": "x" * 2000})},
        kept=partial_text,
    ),
    Row(
        "replay no line break over --max-line-bytes",
        ("replay", "rec.sse", "--final-json", "final.json", "--max-line-bytes", "1000"),
        f"rec.sse:{BASIC_LINES + 1}: line longer than 1000 bytes",
        files={"rec.sse": BASIC + "x" * 5000},
        kept=partial_text,
    ),
    Row(
        "replay final-json in a missing folder",
        ("replay", "rec.sse", "--final-json", "missing/final.json"),
        "--final-json: the folder 'missing' does not exist",
        files={"rec.sse": BASIC},
        kept=no_final_json,
    ),
    Row(
        "replay final-json a folder",
        ("replay", "rec.sse", "--final-json", "out"),
        "--final-json: 'out' is a folder",
        files={"rec.sse": BASIC, "out/keep": ""},
        kept=no_final_json,
    ),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def redis_url(tmp_path: Path, stack: contextlib.ExitStack) -> str:
    """A real redis-server for the test, stopped when it ends; its URL without a database."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    stack.callback(server.stop)
    return server.url.removesuffix("/0")


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, row: Row, busy_port: int) -> None:
    with contextlib.ExitStack() as stack:
        needs_redis = any("REDIS" in arg for arg in row.argv)
        places = {"BUSY": str(busy_port), "REDIS": redis_url(tmp_path, stack) if needs_redis else "REDIS"}
        row = dataclasses.replace(
            row,
            argv=tuple(_fill(arg, places) for arg in row.argv),
            expect=_fill(row.expect, places),
            files={
                name: _fill(content, places) if isinstance(content, str) else content
                for name, content in row.files.items()
            },
        )
        check_row(tmp_path, row)


def _fill(text: str, places: dict[str, str]) -> str:
    for name, value in places.items():
        text = text.replace(name, value)
    return text


def check_row(tmp_path: Path, row: Row) -> None:
    """Runs the row's command in ``tmp_path`` and checks its one line, its status and what it kept."""
    for name, content in row.files.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    if row.setup is not None:
        row.setup(tmp_path)
    done = subprocess.run(
        [*RILLET, *row.argv],
        cwd=tmp_path,
        env=clean_environment(PYTHONPATH=os.pathsep.join(sys.path), **row.env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert lines, f"nothing on stderr; exit {done.returncode}"
    assert len(lines) == row.line + 1, done.stderr
    assert row.expect in lines[row.line], done.stderr
    assert lines[row.line].startswith("rillet"), done.stderr
    assert done.returncode == row.status, done.stderr
    if row.kept is not None:
        row.kept(tmp_path, done)
