"""Built-in stages: filter, accumulate, repetition, cost, latency (one module each)."""

from pipeline.stages._base import Stage, StageFactory, StreamContext

__all__ = ["Stage", "StageFactory", "StreamContext"]
