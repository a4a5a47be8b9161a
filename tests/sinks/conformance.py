"""The sink contract (style.md §3) as checks any sink's tests can run, and the items to feed them.

Every built-in sink runs :data:`CHECKS`; a new sink's test module adds::

    from tests.sinks.conformance import CHECKS, Check

    @pytest.mark.anyio
    @pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
    async def test_conformance(check: Check) -> None:
        await check(lambda: MySink(...))

The factory is called once per sink a check needs, each time for a fresh, unopened sink.
"""

from __future__ import annotations

import gc
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio
from anthropic.types import RawContentBlockDeltaEvent, RawContentBlockStartEvent, TextBlock, TextDelta

from pipeline.apps.run.sse_file import read_sse_events
from pipeline.errors import SourceError
from pipeline.events import Item, StreamEnded
from pipeline.sink import Sink

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sse"

SinkFactory = Callable[[], Sink]
Check = Callable[[SinkFactory], Awaitable[None]]


def sample_items(stream_id: str = "conformance", text: Sequence[str] = ("Hello", " world")) -> list[Item]:
    """A short stream that completes: a text block in a few deltas, then ``StreamEnded``."""
    block = TextBlock(type="text", text="")
    events: list[object] = [
        RawContentBlockStartEvent(type="content_block_start", index=0, content_block=block)
    ]
    events += [
        RawContentBlockDeltaEvent(
            type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text=t)
        )
        for t in text
    ]
    events.append(StreamEnded(outcome="completed", stop_reason="end_turn"))
    return [Item(stream_id, event, received_ns=seq, seq=seq) for seq, event in enumerate(events)]


def recorded_items(name: str, stream_id: str = "s1") -> list[Item]:
    """A recorded fixture's events as the runner delivers them, ending with the ``StreamEnded`` it would add.

    The ``received_ns`` stamps are the sequence numbers: deterministic, and increasing as real ones are.
    """
    events: list[object] = []
    stop_reason: str | None = None
    try:
        for recorded in read_sse_events(FIXTURES / name):
            events.append(recorded.event)
            if recorded.event.type == "message_delta":
                stop_reason = recorded.event.delta.stop_reason
        ended = StreamEnded(outcome="completed", stop_reason=stop_reason)
    except SourceError as exc:
        ended = StreamEnded(outcome="error", stop_reason=None, error=str(exc), error_type=exc.error_type)
    events.append(ended)
    return [Item(stream_id, event, received_ns=seq, seq=seq) for seq, event in enumerate(events)]


async def check_enter_write_exit(factory: SinkFactory) -> None:
    """A sink opens, takes batches of any size, and closes without error."""
    items = sample_items()
    sink = factory()
    assert isinstance(sink.name, str)
    assert sink.name
    async with sink as entered:
        assert entered is sink
        await sink.write(items[:1])
        await sink.write(items[1:])


async def check_close_is_idempotent(factory: SinkFactory) -> None:
    """Closing twice is harmless, after a normal close and after a failed one."""
    for exc in (None, RuntimeError("boom")):
        sink = factory()
        await sink.__aenter__()
        await sink.write(sample_items())
        await sink.__aexit__(None if exc is None else type(exc), exc, None)
        await sink.__aexit__(None, None, None)


async def check_write_after_close_raises(factory: SinkFactory) -> None:
    """A closed sink refuses writes with ``anyio.ClosedResourceError``."""
    sink = factory()
    async with sink:
        await sink.write(sample_items())
    try:
        await sink.write(sample_items())
    except anyio.ClosedResourceError:
        return
    raise AssertionError(f"{sink.name}: write after close did not raise ClosedResourceError")


async def check_exit_with_error_releases(factory: SinkFactory) -> None:
    """Closing with an error or a cancellation mid-stream releases everything and swallows nothing."""
    for exc in (RuntimeError("boom"), anyio.get_cancelled_exc_class()()):
        sink = factory()
        await sink.__aenter__()
        await sink.write(sample_items()[:-1])
        # The protocol says None; a sink returning True would still swallow the error at run time.
        swallowed = await sink.__aexit__(type(exc), exc, exc.__traceback__)  # type: ignore[func-returns-value]
        assert not swallowed, f"{sink.name}: __aexit__ swallowed {exc!r}"
        try:
            await sink.write(sample_items())
        except anyio.ClosedResourceError:
            pass
        else:
            raise AssertionError(f"{sink.name}: write after a failed close did not raise ClosedResourceError")
        with unreleased() as leaks:
            del sink
            gc.collect()
        assert not leaks, f"closing with {type(exc).__name__} left resources to the collector: {leaks}"


@contextmanager
def unreleased() -> Iterator[list[str]]:
    """Collects the ResourceWarnings of objects freed unclosed in the block: what a sink failed to release."""
    found: list[str] = []

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        found.append(repr(unraisable.exc_value))

    previous, sys.unraisablehook = sys.unraisablehook, hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            yield found
    finally:
        sys.unraisablehook = previous


CHECKS: tuple[Check, ...] = (
    check_enter_write_exit,
    check_close_is_idempotent,
    check_write_after_close_raises,
    check_exit_with_error_releases,
)
"""Every check of the contract, for ``pytest.mark.parametrize``."""
