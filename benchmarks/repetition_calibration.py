"""Calibration of the repetition stage: false positives on real text, detection points, cost per char.

Run ``python benchmarks/repetition_calibration.py`` (add ``--full`` for the Debian copyright files,
changelogs and the whole stdlib as tool input, about two minutes). Each corpus is streamed as a
model would stream it, in seeded random deltas of 1 to 40 chars, through a fresh stage per file.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import pydoc_data.topics
import random
import sysconfig
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)

from pipeline.events import Item, RepetitionDetected
from pipeline.stages import StreamContext
from pipeline.stages.repetition import RepetitionSettings, RepetitionStage


def pieces(text: str, seed: int, largest: int = 40) -> Iterator[str]:
    rng = random.Random(seed)
    start = 0
    while start < len(text):
        size = rng.randint(1, largest)
        yield text[start : start + size]
        start += size


def stream(text: str, seed: int, tool_input: bool = False) -> list[Item]:
    """One content block carrying ``text``: prose in a text block, or code as a tool's JSON input."""
    block = (
        ToolUseBlock(type="tool_use", id="t", name="write", input={})
        if tool_input
        else TextBlock(type="text", text="")
    )
    items = [
        Item("s", RawContentBlockStartEvent(type="content_block_start", index=0, content_block=block), 0)
    ]
    for piece in pieces(text, seed):
        delta = (
            InputJSONDelta(type="input_json_delta", partial_json=piece)
            if tool_input
            else TextDelta(type="text_delta", text=piece)
        )
        items.append(
            Item("s", RawContentBlockDeltaEvent(type="content_block_delta", index=0, delta=delta), 0)
        )
    return items


def detect(
    items: list[Item], settings: RepetitionSettings
) -> tuple[int | None, RepetitionDetected | None, float]:
    """(chars streamed when it fired, what fired, seconds spent in the stage)."""
    stage = RepetitionStage(StreamContext("s", "m", {}, 0), settings)
    streamed = 0
    spent = 0.0
    for item in items:
        delta = getattr(item.event, "delta", None)
        streamed += len(getattr(delta, "text", None) or getattr(delta, "partial_json", None) or "")
        began = time.perf_counter()
        out = list(stage.process(item))
        spent += time.perf_counter() - began
        if len(out) > 1:
            return streamed, out[1].event, spent
    return None, None, spent


def corpora(full: bool) -> Iterable[tuple[str, str, bool]]:
    """(name, text, is code) for every file of the sweep."""
    for path in sorted(Path("/usr/share/common-licenses").iterdir()):
        if path.is_file():
            yield str(path), path.read_text(errors="replace"), False
    yield "pydoc_data.topics", "".join(pydoc_data.topics.topics.values()), False
    if not full:
        return
    for name in sorted(glob.glob("/usr/share/doc/*/copyright")):
        yield name, Path(name).read_text(errors="replace"), False
    for name in sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz")):
        with gzip.open(name, "rt", errors="replace") as file:
            yield name, file.read(), False
    for name in sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/**/*.py", recursive=True)):
        if "/test" not in name and "site-packages" not in name:
            yield name, Path(name).read_text(errors="replace"), True


def sweep(full: bool) -> None:
    settings = RepetitionSettings(channels=frozenset({"text", "tool_input"}))
    chars = fires = 0
    spent = 0.0
    for seed, (name, text, code) in enumerate(corpora(full)):
        where, event, seconds = detect(stream(text, seed, tool_input=code), settings)
        chars += len(text)
        spent += seconds
        if event is not None:
            fires += 1
            print(f"FIRE {name} at char {where}: period {event.period} x{event.repeats} {event.sample!r}")
    print(f"false positives: {fires} over {chars:,} chars; {spent / chars * 1e6:.3f} µs per char")


def detection_points() -> None:
    gpl = Path("/usr/share/common-licenses/GPL-3").read_text()
    prefix = gpl[:5000]
    units = {f"{n}-char paragraph": gpl[20_000 : 20_000 + n] for n in (200, 377, 500, 800)}
    units |= {"78-char sentence": gpl[12_000:12_078], "22-char phrase": gpl[15_000:15_022], "'The '": "The "}
    for label, unit in units.items():
        copies = []
        for seed in range(5):
            where, _, _ = detect(stream(prefix + unit * (2000 // len(unit) + 10), seed), RepetitionSettings())
            copies.append((where - len(prefix)) / len(unit) if where is not None else float("inf"))
        print(f"{label}: fired after {min(copies):.2f}-{max(copies):.2f} copies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the Debian docs and the stdlib (slow)")
    args = parser.parse_args()
    detection_points()
    sweep(args.full)


if __name__ == "__main__":
    main()
