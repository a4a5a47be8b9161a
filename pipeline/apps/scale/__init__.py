"""Scale-out on Redis Streams: durable report jobs, fenced takeover, shared per-job event logs."""

from pipeline.apps.scale._redis import Keys, RedisCancelSignals, RedisEventLog, RedisJobQueue, open_redis
from pipeline.apps.scale.protocols import (
    CancelSignals,
    EventLog,
    Fenced,
    Frame,
    JobQueue,
    Lease,
    LogEntry,
    LogFull,
    Lost,
    Take,
)
from pipeline.apps.scale.settings import RedisConfig, load_scale_config

__all__ = [
    "CancelSignals",
    "EventLog",
    "Fenced",
    "Frame",
    "JobQueue",
    "Keys",
    "Lease",
    "LogEntry",
    "LogFull",
    "Lost",
    "RedisCancelSignals",
    "RedisConfig",
    "RedisEventLog",
    "RedisJobQueue",
    "Take",
    "load_scale_config",
    "open_redis",
]
