"""``rillet bench``: a streaming benchmark of the Messages API built on rillet's own source and meters."""

from pipeline.apps.bench.arrivals import arrival_offsets
from pipeline.apps.bench.record import RecordStage, RequestRecord
from pipeline.apps.bench.results import PointRun, point_result
from pipeline.apps.bench.run import BenchReport, run_bench
from pipeline.apps.bench.settings import BenchConfig, SimulatorConfig
from pipeline.apps.bench.stats import Summary, percentile

__all__ = [
    "BenchConfig",
    "BenchReport",
    "PointRun",
    "RecordStage",
    "RequestRecord",
    "SimulatorConfig",
    "Summary",
    "arrival_offsets",
    "percentile",
    "point_result",
    "run_bench",
]
