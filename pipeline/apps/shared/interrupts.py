"""Ctrl+C and SIGTERM for ``rillet run``, handled from the first instant the command runs.

Python's default SIGINT raises ``KeyboardInterrupt`` wherever the main thread is: during start-up
that printed a traceback, and once the event loop ran but before the stream listened for signals
it turned into a cancellation that could wait forever on a fan-out lane not yet started. Here one
handler is installed first thing in ``main()`` and kept all run:

- before the run starts (imports, arguments, configuration), a signal exits at once, quietly,
  with 128 + its number (130 for Ctrl+C);
- once the run started, the first signal is held until the stream listens (:func:`listening`),
  then cancels it, so sinks flush and the partial report is marked; the run reports it;
- a second signal always exits at once: the user asked twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import ClassVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    caught: ClassVar[list[signal.Signals]] = []
    running = False
    cancel: Callable[[str], None] | None = None
    loop: asyncio.AbstractEventLoop | None = None


def install() -> None:
    """Takes SIGINT and SIGTERM over from Python's defaults, for the whole process."""
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


def caught() -> list[signal.Signals]:
    """The signals received so far, first first."""
    return list(_State.caught)


def start_run() -> None:
    """From now on a first signal is held for the stream instead of exiting."""
    _State.running = True


@contextmanager
def listening(cancel: Callable[[str], None]) -> Iterator[None]:
    """While inside, a signal cancels the stream (through its loop); one already held does at once."""
    _State.loop = asyncio.get_running_loop()
    _State.cancel = cancel
    try:
        if _State.caught:
            cancel(_reason(_State.caught[0]))
        yield
    finally:
        _State.cancel = None
        _State.loop = None


def _reason(signum: signal.Signals) -> str:
    return f"stopped by {signum.name}"


def _on_signal(signum: int, frame: FrameType | None) -> None:
    received = signal.Signals(signum)
    if _State.caught or not _State.running:
        sys.stderr.flush()
        os._exit(128 + signum)
    _State.caught.append(received)
    cancel, loop = _State.cancel, _State.loop
    if cancel is not None and loop is not None:
        loop.call_soon_threadsafe(cancel, _reason(received))
