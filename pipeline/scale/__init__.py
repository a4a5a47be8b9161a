"""Scale-out on Redis Streams: durable report jobs, fenced takeover, shared per-job event logs."""

from pipeline.scale._redis import Keys, RedisEventLog, RedisJobQueue, open_redis
from pipeline.scale.protocols import EventLog, Fenced, Frame, JobQueue, Lease, LogEntry, LogFull, Lost, Take
from pipeline.scale.settings import RedisConfig, load_scale_config

__all__ = [
    "EventLog",
    "Fenced",
    "Frame",
    "JobQueue",
    "Keys",
    "Lease",
    "LogEntry",
    "LogFull",
    "Lost",
    "RedisConfig",
    "RedisEventLog",
    "RedisJobQueue",
    "Take",
    "load_scale_config",
    "open_redis",
]
