"""The ``[redis]`` section of a config file: where Redis is, and the bounds a job lives within.

Until ``RunConfig`` carries it (``redis: RedisConfig | None``), :func:`load_scale_config` splits
the section off the TOML itself and validates the rest with the core loader.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.config import RunConfig, Strict, describe_validation_error, parse_config
from pipeline.errors import ConfigError


class RedisConfig(Strict):
    """Redis address, leases and memory bounds; the defaults follow reference/scale-out.md §6."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "rillet"
    """Every key starts with it, so several deployments can share one Redis."""
    lease_seconds: float = Field(30.0, gt=0)
    """A job whose worker has not renewed it for this long is taken over by another worker."""
    ttl_running: int = Field(3600, ge=1)
    """Seconds a running job's log lives past its last append."""
    ttl_finished: int = Field(86_400, ge=1)
    """Seconds a finished job's log and status stay readable."""
    byte_cap: int = Field(2 << 20, ge=1024)
    """A job whose log would pass this many bytes fails loudly rather than grow Redis without bound."""
    flush_ms: float = Field(75.0, ge=1, le=1000)
    """Events are coalesced this long into one append (one round trip per job per window)."""
    max_attempts: int = Field(5, ge=1)
    """A job taken this many times without finishing goes to the dead-letter stream."""

    @field_validator("url")
    @classmethod
    def _a_redis_url(cls, url: str) -> str:
        """coredis fails on a malformed URL with a bare ``AssertionError``: name the URL instead."""
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        if parts.scheme == "unix" and parts.path:
            return url
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"{url!r} is not a Redis URL such as redis://127.0.0.1:6379/0")
        if parts.path.strip("/") and not parts.path.strip("/").isdecimal():
            raise ValueError(f"{url!r} names database {parts.path.strip('/')!r}, not a number")
        return url

    def with_url(self, url: str) -> RedisConfig:
        """The same settings with ``--redis URL``, checked as the config's ``url`` is."""
        try:
            return RedisConfig.model_validate(self.model_dump() | {"url": url})
        except ValidationError as exc:
            raise ConfigError(f"--redis: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None

    @model_validator(mode="after")
    def _lease_fits(self) -> RedisConfig:
        if self.flush_ms / 1000 >= self.lease_seconds / 3:
            raise ValueError("flush_ms must be well under a third of lease_seconds")
        return self


def load_scale_config(path: Path | None) -> tuple[RunConfig, RedisConfig]:
    """The run config and its ``[redis]`` section; ``None`` gives the defaults of both."""
    config, redis = read_scale_config(path)
    return config, redis or RedisConfig()


def read_scale_config(path: Path | None) -> tuple[RunConfig, RedisConfig | None]:
    """The run config, and its ``[redis]`` section if it has one (``rillet serve`` is then a replica)."""
    if path is None:
        return RunConfig(), None
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    section = data.pop("redis", None)
    try:
        redis = None if section is None else RedisConfig.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(f"{path}: [redis]", exc)) from None
    return parse_config(data, path), redis
