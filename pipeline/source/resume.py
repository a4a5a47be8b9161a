"""Resuming a dropped stream: settings, the strategy for the next attempt, and its request.

The server cannot resume a stream (reference §2.1): every attempt is a new generation, so the
text received so far is sent back and the model asked to carry on.

- ``prefill`` (models that accept it, thinking off): the original request plus an assistant turn
  holding the text so far, its trailing whitespace removed as the API demands. The answer is the
  true continuation: only whitespace is reconciled, nothing else trimmed.
- ``continue`` (Claude 4.6 and later, which answer 400 "This model does not support assistant
  message prefill"): the original request, the partial assistant turn and a user turn asking to
  continue exactly where it stopped; the words the model restates first are removed.
- ``restart``: the original request again. A new generation cannot be spliced: sinks get an
  ``AttemptStarted(strategy="restart")`` and a fresh answer after the blocks they have (see
  :mod:`pipeline.source._stitch`). It is the only way on for a stream holding a thinking block (which
  cannot be sent back partial, nor prefilled) or a finished tool call (which needs its result
  before a user turn), if ``on_thinking="restart"``; the default is to fail.
- ``retry``: at most one word was sent (maybe a cut one, ``#`` of ``##``), too little to continue
  from, so the original request is sent again and what its answer repeats of that word dropped.

A prefill or continue resume's ``max_tokens`` is the original's less the tokens of the text sent
back: estimated here, then counted by the API (:func:`pipeline.source._budget.fit_budget`).

``auto`` picks ``prefill`` where the model accepts it, else ``continue``; which models accept it
is guessed from the model id and learnt from the API's 400 (:class:`PrefillSupport`). A stream
whose ``message_delta`` carried a ``stop_reason`` is complete and is never resumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict

from pipeline.errors import ConfigError, SourceError
from pipeline.source._budget import estimated_tokens, remaining

if TYPE_CHECKING:  # the SDK's types: a config that names resume settings need not load the SDK
    from pipeline.source._failure import Failure
    from pipeline.source._stitch import Join, Transcript

ResumeMode = Literal["auto", "prefill", "continue", "restart", "off"]
Strategy = Literal["initial", "retry", "prefill", "continue", "restart"]

CONTINUE_PROMPT = (
    "Your previous response was cut off mid-stream. It ended with: «{tail}». Continue exactly from "
    "that point: no repeated text, no preamble; finish a word or sentence left open."
)
"""The user turn of a ``continue`` resume (reference §2.3 step 3(b))."""

PROMPT_TAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class ResumeSettings:
    """How a logical stream survives drops, stalls, error events and 429/529/5xx answers.

    Also the ``[resume]`` table of a config file, validated as it stands (unknown keys refused).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    mode: ResumeMode = "auto"
    max_attempts: int = 4
    """HTTP attempts per logical stream, the first included."""
    max_total_seconds: float = 120.0
    """No attempt starts after this long since the first one (waits included)."""
    idle_timeout: float = 90.0
    """Seconds without an event (the SDK hides pings) after which the connection counts as dropped."""
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    on_thinking: Literal["fail", "restart"] = "fail"
    """What to do when the stream cannot be spliced: it holds thinking or a finished tool call."""
    wait: bool = True
    """False removes the sleeping between attempts (tests); waits still count against the time."""
    chars_per_token: float = 4.0
    """Turns the text already received into the output tokens a resume's ``max_tokens`` loses,
    when the API cannot count them (:mod:`pipeline.source._budget`)."""

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "prefill", "continue", "restart", "off"):
            raise ConfigError(
                f"resume mode must be auto, prefill, continue, restart or off, got {self.mode!r}"
            )
        if self.on_thinking not in ("fail", "restart"):
            raise ConfigError(f"resume on_thinking must be 'fail' or 'restart', got {self.on_thinking!r}")
        if self.max_attempts < 1:
            raise ConfigError(f"resume max_attempts must be at least 1, got {self.max_attempts!r}")
        for name in ("max_total_seconds", "idle_timeout", "backoff_max", "chars_per_token"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"resume {name} must be greater than 0, got {getattr(self, name)!r}")
        if not 0 <= self.backoff_initial <= self.backoff_max:
            raise ConfigError(
                f"resume backoff_initial must be between 0 and backoff_max, got {self.backoff_initial!r}"
            )


_VERSION = re.compile(r"claude-(?:[a-z]+-)?(\d+)(?:-(\d{1,2}))?(?![0-9])")


class PrefillSupport:
    """Which models accept an assistant prefill: guessed from the id, corrected by the API's 400.

    One instance per process remembers what the API said, so only the first resume of a model
    that was guessed wrong pays a 400.
    """

    def __init__(self, *, guess: bool = True) -> None:
        self._guess = guess
        self._rejected: set[str] = set()

    def accepts(self, model: str) -> bool:
        """Whether a resume of ``model`` should try prefill."""
        return model not in self._rejected and not (self._guess and _known_to_reject(model))

    def reject(self, model: str) -> None:
        """The API answered that ``model`` does not support prefill."""
        self._rejected.add(model)


def _known_to_reject(model: str) -> bool:
    """Claude 4.6 and later, per the migration guide; unknown ids are given the benefit of the doubt."""
    match = _VERSION.match(model)
    if match is None:
        return False
    return (int(match.group(1)), int(match.group(2) or 0)) >= (4, 6)


PREFILL_SUPPORT = PrefillSupport()
"""The process-wide default; a :class:`~pipeline.source.stream.Source` may be given its own."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The next HTTP attempt: what it is called, why, what it sends, how its text joins."""

    strategy: Strategy
    reason: str
    request: dict[str, Any]
    join: Join | None = None
    blocks: tuple[str, ...] = ()
    """A prefill or continue resume: the text blocks sent back, whose tokens its budget loses."""


def plan_resume(
    request: dict[str, Any],
    transcript: Transcript,
    failure: Failure,
    settings: ResumeSettings,
    support: PrefillSupport,
) -> Plan:
    """The attempt after ``failure``; raises :class:`SourceError` when no attempt can carry on."""
    model = str(request.get("model", ""))
    if failure.prefill_rejected:
        if settings.mode != "auto":
            raise SourceError(f"{failure.message} (resume mode is {settings.mode!r})", failure.reason)
        support.reject(model)
    blocks = [text for text in transcript.text_blocks() if text.strip()]
    spliceable = all(kind == "text" for kind in transcript.types)
    if spliceable and len("".join(blocks).split()) < 2:
        return Plan("retry", failure.reason, request, "retry")
    if settings.mode == "off":
        raise SourceError(f"{failure.message} (resume is off)", failure.reason)
    if not spliceable or _thinking(request) or request["messages"][-1].get("role") == "assistant":
        if settings.on_thinking == "fail" and settings.mode != "restart":
            raise SourceError(
                f"{failure.message}; the stream cannot be resumed (it holds thinking or a tool call, "
                "or the request ends with an assistant turn): set resume on_thinking = 'restart' "
                "to restart it",
                failure.reason,
            )
        return Plan("restart", failure.reason, request)
    if settings.mode == "restart":
        return Plan("restart", failure.reason, request)
    max_tokens = remaining(request, estimated_tokens(blocks, settings.chars_per_token))
    sent = tuple(blocks)
    if settings.mode == "prefill" or (settings.mode == "auto" and support.accepts(model)):
        return Plan("prefill", failure.reason, prefill_request(request, blocks, max_tokens), "prefill", sent)
    return Plan("continue", failure.reason, continue_request(request, blocks, max_tokens), "continue", sent)


def prefill_request(request: dict[str, Any], blocks: list[str], max_tokens: int) -> dict[str, Any]:
    """The original request plus an assistant turn holding ``blocks``, the last one rstripped."""
    return {**request, "messages": [*request["messages"], _assistant(blocks)], "max_tokens": max_tokens}


def continue_request(request: dict[str, Any], blocks: list[str], max_tokens: int) -> dict[str, Any]:
    """The original request, the partial assistant turn, and a user turn asking to carry on."""
    tail = blocks[-1].rstrip()[-PROMPT_TAIL_CHARS:]
    ask = {"role": "user", "content": CONTINUE_PROMPT.format(tail=tail)}
    return {**request, "messages": [*request["messages"], _assistant(blocks), ask], "max_tokens": max_tokens}


def _assistant(blocks: list[str]) -> dict[str, Any]:
    content = [{"type": "text", "text": text} for text in blocks[:-1]]
    content.append({"type": "text", "text": blocks[-1].rstrip()})
    return {"role": "assistant", "content": content}


def _thinking(request: dict[str, Any]) -> bool:
    thinking = request.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
