"""Deprecated: the browser's frame log lives in :mod:`pipeline.apps.shared.frame_log`; this path
goes in the next release."""

from pipeline.deprecated import forward

__getattr__ = forward("sinks.sse_log", "pipeline.apps.shared.frame_log")
