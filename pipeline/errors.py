"""One error vocabulary for rillet.

::

    RilletError
    ├── ConfigError        a configuration file or option is wrong (exit status 2)
    ├── InputError         a recorded stream or prompt file cannot be read (exit status 2)
    ├── SourceError        the upstream API failed in a way retries did not cure
    ├── SinkError          a sink failed; chained to the destination's own error
    ├── PluginError        a stage or sink does not meet its protocol (also a TypeError)
    │   (the applications' own, in pipeline.apps.scale.protocols:)
    ├── Fenced             a job was taken over: its old worker must write nothing more
    ├── Lost               Redis lost a job's latest writes: the worker is ahead of the log
    ├── LogFull            a job's log would pass its byte cap: the job fails loudly
    └── Malformed          what Redis holds for a job cannot be a job's: dead-lettered at once

    Exception
    ├── Busy               pipeline.apps.serve: a server bound was reached (refused over HTTP)
    └── ApiError           pipeline.apps.simulator: what the simulated API answers as an error

The last two never reach a user as rillet's own error: each becomes an HTTP response.

anyio's ``ClosedResourceError``, ``BrokenResourceError``, ``EndOfStream`` and ``WouldBlock`` are
reused rather than twinned.
"""

from __future__ import annotations


class RilletError(Exception):
    """The root of every error rillet raises on purpose; its message is one line for a user."""


class ConfigError(RilletError):
    """A configuration file, key or option is invalid: the message names file, key and expectation."""


def cannot_listen(host: str, port: int, exc: OSError, where: str = "") -> ConfigError:
    """A server's address that is busy or foreign: the configuration's to fix (exit 2), never a traceback.

    ``where`` names what asked for the address (a flag, a sink), when the address alone does not."""
    prefix = f"{where}: " if where else ""
    return ConfigError(f"{prefix}cannot listen on {host}:{port}: {exc.strerror or exc}")


class InputError(RilletError):
    """Input the user gave (a recorded stream, a prompt file) is malformed: the message names the line."""


class SourceError(RilletError):
    """The upstream API failed and the source gave up; ``error_type`` is a bounded label for metrics."""

    def __init__(self, message: str, error_type: str = "api_error") -> None:
        super().__init__(message)
        self.error_type = error_type


class SinkError(RilletError):
    """A sink could not write or close; ``sink`` names it."""

    def __init__(self, sink: str, message: str) -> None:
        super().__init__(f"sink {sink!r}: {message}")
        self.sink = sink


class PluginError(RilletError, TypeError):
    """A stage or sink given in code does not meet its protocol: the message names both."""


def error_label(error: RilletError) -> str:
    """A bounded label for metrics and summaries: the API's error type, or the kind of rillet error."""
    if isinstance(error, SourceError):
        return error.error_type
    return {
        ConfigError: "config_error",
        InputError: "input_error",
        SinkError: "sink_error",
        PluginError: "plugin_error",
    }.get(type(error), "rillet_error")
