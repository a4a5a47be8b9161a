"""What the file sink's path points to: a symlink's target is written, a FIFO or device directly.

Real file-system objects: a symlink, a FIFO read by a thread, ``/dev/null``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from sinks.file import FileSink
from tests.sinks.conformance import recorded_items
from tests.sinks.test_file_sink import RECORDINGS, expected_text, write_all

pytestmark = pytest.mark.anyio

NAME = next(name for name in RECORDINGS if "max_tokens" not in name)


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


async def test_a_symlink_stays_a_link_and_its_target_gets_the_report(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "real.md"
    target.parent.mkdir()
    target.write_text("an older report", encoding="utf-8")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    await write_all(FileSink(link, mode="text"), recorded_items(NAME))
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text("utf-8") == expected_text(NAME)
    assert names(target.parent) == ["real.md"]
    assert names(tmp_path) == ["link.md", "reports"]


async def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    target = tmp_path / "new.md"
    link = tmp_path / "link.md"
    link.symlink_to(target)
    await write_all(FileSink(link, mode="text"), recorded_items(NAME))
    assert link.is_symlink()
    assert target.read_text("utf-8") == expected_text(NAME)


async def test_a_fifo_is_written_directly_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        await write_all(FileSink(fifo, mode="text"), recorded_items(NAME))
    finally:
        reader.join(5)  # the sink closed its end: the reader sees the end of the data
        if reader.is_alive():  # the sink failed before opening: let the reader go (never block here)
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(10)
    assert fifo.is_fifo()
    assert b"".join(received).decode("utf-8") == expected_text(NAME)
    assert names(tmp_path) == ["report.fifo"]


async def test_a_fifo_gets_the_marker_of_an_incomplete_report(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    await write_all(FileSink(fifo, mode="text"), recorded_items(NAME)[:-1])
    reader.join(10)
    assert "<!-- rillet: incomplete -->" in b"".join(received).decode("utf-8")
    assert fifo.is_fifo()


async def test_a_device_is_written_directly(tmp_path: Path) -> None:
    """``/dev/null`` (through a link, as a user's own path might be) stays the device."""
    link = tmp_path / "null.md"
    link.symlink_to("/dev/null")
    before = os.stat("/dev/null")
    await write_all(FileSink(link, mode="text"), recorded_items(NAME))
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    assert link.is_symlink()
    assert names(tmp_path) == ["null.md"]
    assert "null.part" not in names(Path("/dev"))
