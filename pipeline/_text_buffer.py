"""Text that grows a delta at a time, kept at about one byte per ASCII character however many deltas.

A delta's string is a whole object (49 bytes of header for 15 characters of text, typically), so a
list of a long stream's deltas costs four times its text, and the accumulator and the stitcher
each keep one (issue 19 measured 137 B per delta). Every :data:`JOIN_EVERY` pieces the recent ones
are joined into one string, so the overhead per delta falls to a byte or two while an append stays
O(1): only the recent pieces are ever joined, never the text before them.
"""

from __future__ import annotations

JOIN_EVERY = 64
"""Pieces joined at once: a few microseconds every 64 deltas, and headers of 1/64 object per delta."""


class TextBuffer:
    """Appended strings, read back as one with :meth:`value`."""

    __slots__ = ("_joined", "_parts")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._joined = 0
        """How many leading parts are joined chunks; the pieces after them are as appended."""

    def __bool__(self) -> bool:
        """Whether anything was appended, even an empty string (a block that has its field)."""
        return bool(self._parts)

    def append(self, piece: str) -> None:
        parts = self._parts
        parts.append(piece)
        if len(parts) - self._joined >= JOIN_EVERY:
            parts[self._joined :] = ["".join(parts[self._joined :])]
            self._joined += 1

    def value(self) -> str:
        """The text as one string, kept joined so that reading it again (live polling) is cheap."""
        parts = self._parts
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
            self._joined = 1
        return parts[0] if parts else ""
