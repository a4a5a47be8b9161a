"""A real ``redis-server`` per test (AOF on, its own directory and port), ended by its pid."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from scale_harness import RedisServer

from pipeline.apps.scale import RedisConfig, RedisEventLog, RedisJobQueue, open_redis


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """``appendfsync everysec``, or the policy a test passes as an indirect parameter."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, getattr(request, "param", "everysec"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def scale(redis_server: RedisServer) -> AsyncIterator[tuple[RedisJobQueue, RedisEventLog]]:
    """A queue and a log on the test's Redis, lease 1 s so takeovers are quick."""
    config = RedisConfig(url=redis_server.url, lease_seconds=1.0, flush_ms=50)
    async with open_redis(config) as client:
        queue = RedisJobQueue(client, config)
        await queue.ensure_group()
        yield queue, RedisEventLog(client, config)
