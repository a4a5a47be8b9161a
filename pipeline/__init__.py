"""rillet: an asyncio stream-processing pipeline for Claude's streaming Messages API.

The public front: everything a program needs to build a pipeline in code. Implementation lives in
the modules; applications (``rillet run``, ``serve``, ``bench``, ...) are built on these names.
"""

from pipeline.client import make_client
from pipeline.errors import ConfigError, InputError, RilletError, SinkError, SourceError
from pipeline.events import (
    AbortRequested,
    AttemptStarted,
    BlockCompleted,
    CostUpdate,
    FirstToken,
    Item,
    LatencySummary,
    MessageAccumulated,
    Outcome,
    RepetitionDetected,
    ResponseHeaders,
    StreamEnded,
    ToolInputError,
    Usage,
)
from pipeline.fanout import FanOut, SinkStatistics
from pipeline.resume import ResumeSettings
from pipeline.runner import Pipeline, StreamResult, StreamRun
from pipeline.sink import Buffer, OnError, OnFull, Sink, SinkSpec
from pipeline.stages import Stage, StageFactory, StreamContext
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.cost import CostSettings, CostStage
from pipeline.stages.filter import FilterStage
from pipeline.stages.latency import LatencyStage
from pipeline.stages.repetition import RepetitionSettings, RepetitionStage

__all__ = [
    "AbortRequested",
    "AccumulateStage",
    "AttemptStarted",
    "BlockCompleted",
    "Buffer",
    "ConfigError",
    "CostSettings",
    "CostStage",
    "CostUpdate",
    "FanOut",
    "FilterStage",
    "FirstToken",
    "InputError",
    "Item",
    "LatencyStage",
    "LatencySummary",
    "MessageAccumulated",
    "OnError",
    "OnFull",
    "Outcome",
    "Pipeline",
    "RepetitionDetected",
    "RepetitionSettings",
    "RepetitionStage",
    "ResponseHeaders",
    "ResumeSettings",
    "RilletError",
    "Sink",
    "SinkError",
    "SinkSpec",
    "SinkStatistics",
    "SourceError",
    "Stage",
    "StageFactory",
    "StreamContext",
    "StreamEnded",
    "StreamResult",
    "StreamRun",
    "ToolInputError",
    "Usage",
    "make_client",
]
