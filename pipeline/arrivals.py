"""When a request left and each chunk of its response arrived: the stamps every rillet client takes.

The default client (:mod:`pipeline.client`) stamps in user space with ``time.perf_counter_ns``; the
wire client (:mod:`pipeline.wire.client`) stamps with the kernel's arrival times. The source reads
both the same way, so it never knows which client it was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx2

SENT_NS = "rillet.sent_ns"
"""Request extension: when the request went to the transport (or, on wire times, to the socket)."""

ARRIVAL = "rillet.arrival"
"""Response extension: the response's :class:`Arrival`."""

Clock = Callable[[], int]
"""When the chunk just read arrived, in ``perf_counter_ns``."""


class Arrival:
    """When the latest chunk of a response body came off the transport, in ``perf_counter_ns``."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


class _StampedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, arrival: Arrival, clock: Clock) -> None:
        self._inner = inner
        self._arrival = arrival
        self._clock = clock

    async def __aiter__(self) -> AsyncIterator[bytes]:
        arrival, clock = self._arrival, self._clock
        async for chunk in self._inner:
            arrival.ns = clock()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def stamp_body(response: httpx2.Response, clock: Clock) -> None:
    """Wraps ``response``'s body so that each chunk notes its arrival by ``clock``."""
    stream = response.stream
    if isinstance(stream, httpx2.AsyncByteStream):
        arrival = Arrival(clock())
        response.extensions[ARRIVAL] = arrival
        response.stream = _StampedStream(stream, arrival, clock)


def arrival(response: httpx2.Response) -> Arrival | None:
    """The response's :class:`Arrival`; None for a client not built here."""
    found = response.extensions.get(ARRIVAL)
    return found if isinstance(found, Arrival) else None


def sent_ns(response: httpx2.Response) -> int | None:
    """When ``response``'s request was sent; None for a client not built here."""
    stamp = response.request.extensions.get(SENT_NS)
    return stamp if isinstance(stamp, int) else None
