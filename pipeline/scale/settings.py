"""The ``[redis]`` section of a config file: where Redis is, and the bounds a job lives within.

Until ``RunConfig`` carries it (``redis: RedisConfig | None``), :func:`load_scale_config` splits
the section off the TOML itself and validates the rest with the core loader.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

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
