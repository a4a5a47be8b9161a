"""Progress: a rich bar on a terminal (a real pty), plain lines on a pipe; done/total, ETA, TTFT p50."""

from __future__ import annotations

import io
import os
import re
import threading

import anyio
import pytest

from pipeline.apps.bench import BenchConfig, SimulatorConfig, progress, run_bench
from pipeline.apps.bench.progress import SLOTS, Snapshot, count, line, new_counters

SETTINGS = BenchConfig(
    num_requests=30,
    concurrency=[2],
    output_tokens=16,
    simulator=SimulatorConfig(ttft_ms=20, tokens_per_s=800),
)


def test_live_median_from_the_workers_histograms() -> None:
    """Two workers' TTFTs merged: the median to within one 5 % bucket; failures counted apart."""
    first, second = new_counters(), new_counters()
    for ttft in (0.1, 0.1, 0.1):
        count(first, True, ttft)
    for ttft in (0.3, 0.3):
        count(second, True, ttft)
    count(second, False, None)
    snap = Snapshot.of(first + second, workers=2)
    assert (snap.done, snap.failed) == (5, 1)
    assert snap.ttft_p50 == pytest.approx(0.1, rel=0.05)
    assert len(first) == SLOTS
    assert Snapshot.of(new_counters(), 1).ttft_p50 is None


def test_the_plain_line_by_hand() -> None:
    """40 of 100 in 12 s: 18 s to go."""
    snap = Snapshot(done=39, failed=1, ttft_p50=0.1034)
    text = line("concurrency 4", snap, 12.0, 100, None)
    assert text == "concurrency 4: 40/100 done, 1 failed, TTFT p50 103 ms, 0:12 elapsed, ETA 0:18"


@pytest.mark.anyio
async def test_a_pipe_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal: whole lines every few seconds, no control codes, the live TTFT filled in."""
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.05)
    err = io.StringIO()
    await run_bench(SETTINGS, out=io.StringIO(), err=err)
    lines = [text for text in err.getvalue().splitlines() if text.startswith("concurrency 2:")]
    assert len(lines) >= 3
    assert "\x1b" not in err.getvalue()
    assert "\r" not in err.getvalue()
    pattern = re.compile(
        r"concurrency 2: (\d+)/30 done, 0 failed, TTFT p50 (–|\d+ ms), \d+:\d\d elapsed, ETA "
    )
    matches = [pattern.fullmatch(text.rsplit("ETA ", 1)[0] + "ETA ") for text in lines]
    assert all(matches), lines
    assert any(m and m[2] != "–" and int(m[2].split()[0]) >= 20 for m in matches)


def test_a_terminal_gets_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a pty: rich's bar with done/total, ETA, live TTFT p50 and errors, redrawn in place."""
    monkeypatch.setattr(progress, "BAR_INTERVAL", 0.02)
    monkeypatch.delenv("TERM", raising=False)
    master, slave = os.openpty()
    received = bytearray()

    def drain() -> None:  # a pty whose buffer fills blocks the writer
        while chunk := _read(master):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    with open(slave, "w", encoding="utf-8", closefd=True) as err:
        assert err.isatty()
        anyio.run(lambda: run_bench(SETTINGS, out=io.StringIO(), err=err))
    reader.join(timeout=10)
    os.close(master)
    text = received.decode(errors="replace")
    assert "━" in text  # the bar
    assert re.search(r"\b\d+/30\b", text)
    assert "ETA " in text
    assert re.search(r"TTFT p50 \d+ ms · 0 errors", text)
    assert "\x1b[" in text  # redrawn in place, not appended


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the slave side closed
        return b""
