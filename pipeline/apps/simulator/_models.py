"""Which models accept an assistant prefill: parsed from the model id, as the real API decides.

Claude 4.6 and later reject a final assistant turn; 4.5 and older accept it. Ids look like
``claude-opus-4-6``, ``claude-sonnet-4-5-20250929``, ``claude-3-5-haiku-latest`` or
``claude-opus-4-8``; a trailing eight-digit date is not a minor version. Ids that are not Claude
ids at all (a benchmark's placeholder) are treated as accepting prefill.
"""

from __future__ import annotations

import re

_NEW_STYLE = re.compile(r"^claude-[a-z]+-(\d+)(?:-(\d{1,2}))?(?:-\d{8}|-latest)?(?:$|[-@])")
_OLD_STYLE = re.compile(r"^claude-(\d+)(?:-(\d{1,2}))?-[a-z]+")

NO_PREFILL_SINCE = (4, 6)


def model_version(model: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Claude model id, or None when the id is not recognised."""
    m = _NEW_STYLE.match(model) or _OLD_STYLE.match(model)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def supports_prefill(model: str) -> bool:
    """Whether the real API would accept a final assistant turn for ``model``."""
    version = model_version(model)
    return version is None or version < NO_PREFILL_SINCE
