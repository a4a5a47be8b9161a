"""The public front: ``pipeline.__all__`` and what the package really exports agree."""

from __future__ import annotations

import types

import pipeline


def test_all_lists_exactly_the_public_names() -> None:
    """Every public non-module name is in ``__all__``, and every ``__all__`` entry exists."""
    public = {
        name
        for name, value in vars(pipeline).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(pipeline.__all__) == public
    assert sorted(pipeline.__all__) == pipeline.__all__
