"""How the server refuses: one exception for exhausted bounds, one JSON shape for every refusal."""

from __future__ import annotations

from starlette.responses import JSONResponse


class Busy(Exception):
    """A bound was reached; the message says which, for the client."""


def refusal(status: int, reason: str) -> JSONResponse:
    """``{"error": reason}``: one line a page can show as it is."""
    return JSONResponse({"error": reason}, status_code=status)
