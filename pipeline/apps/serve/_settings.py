"""The server's settings: where it listens, who may talk to it, and the bounds that keep it alive."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pipeline.config import DEFAULT_MODEL
from pipeline.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MIN_TOKEN_LENGTH = 16
DEFAULT_MAX_KEPT_MIB = 256


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """``rillet serve``'s settings; every bound answers 429 or 503 past it, never grows memory.

    ``token``: required unless ``host`` is loopback (a loopback server is still reachable from
    web pages through DNS rebinding, hence the Host and Origin checks, but not from other machines).
    ``allowed_hosts``: ``Host`` names accepted besides the loopback ones and ``host`` itself; with a
    wildcard ``host`` (``0.0.0.0``, ``::``) and none given, any ``Host`` is accepted and the token
    is the only guard. ``cors_origins``: origins allowed to call the API from other pages.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    model: str = DEFAULT_MODEL
    max_tokens: int = 8000
    max_body_bytes: int = 64 * 1024
    max_running_streams: int = 32
    max_streams: int = 256
    """Streams kept (running or ended); past it the oldest ended one is forgotten first."""
    stream_ttl_s: float = 900.0
    """How long an ended stream stays readable."""
    max_log_bytes: int = 16 << 20
    max_kept_bytes: int = DEFAULT_MAX_KEPT_MIB << 20
    """Bytes of frames all kept logs may hold together; past it the oldest ended streams are forgotten
    first (running ones are never cut: each is bounded by ``max_log_bytes``)."""
    max_connections: int = 1024
    max_connections_per_stream: int = 64
    send_timeout_s: float = 15.0
    """A connection whose send is stuck this long is closed; its browser resumes from its cursor."""
    heartbeat_s: float = 15.0
    max_connection_s: float = 300.0
    """Connections are recycled this often, so half-open sockets do not live for ever."""
    retry_ms: int = 2000
    graceful_shutdown_s: int = 5
    simulated: bool = False
    """The endpoint is the built-in simulator, so a request may pick its scenario and pacing."""

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the access token must be at least {MIN_TOKEN_LENGTH} characters long")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(
                f"binding to {self.host!r} exposes the server to other machines: "
                "set an access token (RILLET_SERVE_TOKEN or --token-file), or bind to 127.0.0.1"
            )
        for name in (
            "max_body_bytes",
            "max_running_streams",
            "max_streams",
            "max_log_bytes",
            "max_kept_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.max_connections < 1 or self.max_connections_per_stream < 1:
            raise ConfigError("connection limits must be at least 1")

    @property
    def wildcard(self) -> bool:
        """Bound to every interface, so the ``Host`` a client uses cannot be known in advance."""
        return self.host in ("0.0.0.0", "::", "")
