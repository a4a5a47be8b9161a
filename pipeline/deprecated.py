"""Old import paths the README or docs once showed, kept for one release with a DeprecationWarning.

Each old module forwards every name to where it now lives; ``python -m OLD`` still runs. Nothing
in rillet imports them, and the import contracts (``pyproject.toml``) do not list them: a
forwarding module is the library's only way up to an application, and it goes in the next release.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved(old: str, new: str) -> str:
    """The warning for a name taken from ``old``."""
    return f"{old} moved to {new}; import from there (the old path goes in the next release)"


def forward(old: str, new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds each name in ``new``, warning once per use."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        warnings.warn(moved(old, new), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__


def run_moved(old: str, command: str) -> None:
    """``python -m OLD``: warns (shown, as the warning is the main module's), then runs ``command``."""
    warnings.warn(f"python -m {old} is deprecated: use `{command}`", DeprecationWarning, stacklevel=2)
