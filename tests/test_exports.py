"""The public front: ``pipeline.__all__`` and what the package really exports agree."""

from __future__ import annotations

import types

import pipeline


def test_all_lists_exactly_the_public_names() -> None:
    """Every ``__all__`` entry loads (on first use), and once all have, nothing public is left out."""
    loaded = {name: getattr(pipeline, name) for name in pipeline.__all__}
    public = {
        name
        for name, value in vars(pipeline).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(pipeline.__all__) == public == set(loaded)
    assert sorted(pipeline.__all__) == pipeline.__all__
    assert set(pipeline.__all__) <= set(dir(pipeline))
