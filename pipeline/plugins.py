"""Stages and sinks written by users are checked against their protocols when a pipeline is built.

Without this a mistake (a stage class without the context argument, ``process`` returning an
``Item`` instead of a tuple of them, a sink without ``name``) surfaced as an ``AttributeError`` or
``TypeError`` from deep inside the runner's task group, wrapped in an ``ExceptionGroup``. Each check
here raises one :class:`~pipeline.errors.PluginError` (a ``TypeError``) that names the plugin, the
protocol and what is wrong. What only a call can tell (what ``process`` returns) is checked where
the runner gets the value, at no cost to a correct stage.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.errors import PluginError

STAGE = "the Stage protocol (pipeline/stages/_base.py): process(item) and finish() return sequences of items"
FACTORY = "the StageFactory protocol: called with the stream's StreamContext, it returns a Stage"
SINK = "the Sink protocol (pipeline/sink.py): name, async write(batch), async __aenter__/__aexit__"


def describe(plugin: object) -> str:
    """``module.Name`` of a class, function or instance; a partial is named by what it wraps."""
    while isinstance(plugin, functools.partial):
        plugin = plugin.func
    named = plugin if inspect.isclass(plugin) or inspect.isroutine(plugin) else type(plugin)
    return f"{named.__module__}.{named.__qualname__}"


def _accepts(function: Callable[..., Any], *arguments: object) -> str | None:
    """Why ``function`` cannot be called with ``arguments``; None if it can (or cannot be told)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: the call itself will tell
    try:
        signature.bind(*arguments)
    except TypeError as exc:
        return f"{exc} (its signature is {signature})"
    return None


def _methods(plugin: object, protocol: str, methods: dict[str, int], subject: str) -> None:
    for method, arity in methods.items():
        found = getattr(plugin, method, None)
        if not callable(found):
            raise PluginError(f"{subject} has no {method}() method: it must meet {protocol}")
        if not inspect.isclass(plugin) and (why := _accepts(found, *([None] * arity))) is not None:
            raise PluginError(f"{subject}.{method}() takes {arity} argument(s): {why}; see {protocol}")


def check_stage_factory(factory: object) -> None:
    """A factory that can be called with one ``StreamContext``; a class must have the stage's methods."""
    name = describe(factory)
    if not callable(factory):
        raise PluginError(f"stage factory {name} is not callable: {FACTORY}")
    if (why := _accepts(factory, None)) is not None:
        raise PluginError(f"stage factory {name} cannot take the stream's context: {why}; {FACTORY}")
    target = factory.func if isinstance(factory, functools.partial) else factory
    if inspect.isclass(target):
        _methods(target, STAGE, {"process": 1, "finish": 0}, f"stage {name}")


def check_stage(stage: object, factory: object) -> None:
    """What ``factory`` built for a stream is a stage: ``process(item)`` and ``finish()``."""
    built, by = describe(stage), describe(factory)
    subject = f"stage {built}" if by == built else f"stage {built} (from {by})"
    _methods(stage, STAGE, {"process": 1, "finish": 0}, subject)


def check_sink(sink: object) -> None:
    """A sink has a ``name`` string, an async ``write(batch)``, and is an async context manager."""
    subject = f"sink {describe(sink)}"
    if not isinstance(getattr(sink, "name", None), str):
        raise PluginError(f"{subject} has no name (a str attribute): it must meet {SINK}")
    _methods(sink, SINK, {"write": 1, "__aenter__": 0, "__aexit__": 3}, subject)
    if not inspect.iscoroutinefunction(sink.write):  # type: ignore[attr-defined]
        raise PluginError(f"{subject}.write is not async (async def write(self, batch)): {SINK}")


def returned(stage: object, method: str, value: object) -> PluginError:
    """The error for a ``process`` or ``finish`` that returned something other than a sequence."""
    return PluginError(
        f"stage {describe(stage)}.{method}() returned {type(value).__name__}, not a sequence of items "
        f"(return (item,) to pass one on, () to drop it): {STAGE}"
    )


def is_items(value: object) -> bool:
    """Whether a stage's result can be chained: a sequence (a tuple or list of items)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)
