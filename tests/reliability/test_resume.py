"""Choosing the next attempt: strategy by model and transcript, requests built for prefill and continue."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import ConfigError, SourceError
from pipeline.source._failure import Failure
from pipeline.source._stitch import Transcript
from pipeline.source.resume import PrefillSupport, ResumeSettings, plan_resume

DROP = Failure("connection_error", "RemoteProtocolError: peer closed connection", retryable=True)
REJECTED = Failure(
    "prefill_unsupported", "400 invalid_request_error: ...", retryable=True, prefill_rejected=True
)


def request(model: str = "claude-haiku-4-5", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1000, "messages": [{"role": "user", "content": "Report."}], **extra}


def transcript(*blocks: tuple[str, str], open_last: bool = True) -> Transcript:
    made = Transcript()
    for kind, value in blocks:
        index = made.add(kind)
        if kind == "text":
            made.texts[index].append(value)
    if not open_last:
        made.open = None
    return made


@pytest.mark.parametrize("sent", [None, "#", "I'", "  Hello "])
def test_at_most_a_word_sent_means_the_same_request_again(sent: str | None) -> None:
    """Before a whole word, a drop re-sends the original request; its answer's repeat is dropped."""
    original = request()
    sent_so_far = transcript(("text", sent)) if sent is not None else Transcript()
    plan = plan_resume(original, sent_so_far, DROP, ResumeSettings(), PrefillSupport())
    assert (plan.strategy, plan.request, plan.join) == ("retry", original, "retry")


def test_prefill_for_a_model_that_accepts_it() -> None:
    """The partial goes back as an assistant turn, trailing whitespace stripped, max_tokens reduced."""
    plan = plan_resume(
        request(), transcript(("text", "Hello world.\n\n")), DROP, ResumeSettings(), PrefillSupport()
    )
    assert plan.strategy == "prefill"
    assert plan.request["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello world."}],
    }
    assert plan.request["max_tokens"] == 1000 - 4


def test_continue_for_a_model_known_to_reject_prefill() -> None:
    """Claude 4.6 and later get the partial and a user turn asking to continue."""
    plan = plan_resume(
        request("claude-sonnet-4-6"),
        transcript(("text", "Hello world.")),
        DROP,
        ResumeSettings(),
        PrefillSupport(),
    )
    assert plan.strategy == "continue"
    assistant, ask = plan.request["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert ask["role"] == "user"
    assert "Hello world." in ask["content"]
    assert "Continue exactly from that point" in ask["content"]


def test_the_prefill_400_switches_to_continue_and_is_remembered() -> None:
    """The API's 'does not support assistant message prefill' is a capability signal, cached per model."""
    support = PrefillSupport(guess=False)
    model = "claude-sonnet-4-6"
    assert support.accepts(model)
    plan = plan_resume(request(model), transcript(("text", "Hi there.")), REJECTED, ResumeSettings(), support)
    assert plan.strategy == "continue"
    assert not support.accepts(model)
    assert support.accepts("claude-haiku-4-5")


def test_forced_prefill_fails_on_the_400() -> None:
    """Mode ``prefill`` was asked for: a model refusing it is an error, not a switch."""
    with pytest.raises(SourceError, match="resume mode is 'prefill'"):
        plan_resume(
            request(),
            transcript(("text", "Hi there.")),
            REJECTED,
            ResumeSettings(mode="prefill"),
            PrefillSupport(),
        )


@pytest.mark.parametrize(
    ("blocks", "extra"),
    [
        pytest.param([("thinking", ""), ("text", "The answer")], {}, id="thinking-block"),
        pytest.param(
            [("text", "The answer")],
            {"thinking": {"type": "enabled", "budget_tokens": 500}},
            id="thinking-on",
        ),
        pytest.param([("text", "Calling."), ("tool_use", "")], {}, id="finished-tool-call"),
    ],
)
def test_unspliceable_streams_fail_or_restart(blocks: list[tuple[str, str]], extra: dict[str, Any]) -> None:
    """Thinking or a finished tool call cannot be sent back: fail by default, restart if configured."""
    with pytest.raises(SourceError, match="on_thinking = 'restart'"):
        plan_resume(request(**extra), transcript(*blocks), DROP, ResumeSettings(), PrefillSupport())
    plan = plan_resume(
        request(**extra), transcript(*blocks), DROP, ResumeSettings(on_thinking="restart"), PrefillSupport()
    )
    assert plan.strategy == "restart"


@pytest.mark.parametrize(
    ("mode", "strategy"), [("restart", "restart"), ("continue", "continue"), ("prefill", "prefill")]
)
def test_forced_modes(mode: Any, strategy: str) -> None:
    """A mode other than auto is taken as said."""
    plan = plan_resume(
        request(), transcript(("text", "Hi there.")), DROP, ResumeSettings(mode=mode), PrefillSupport()
    )
    assert plan.strategy == strategy


def test_off_never_resumes_text() -> None:
    """Mode ``off`` gives up once text was sent."""
    with pytest.raises(SourceError, match="resume is off"):
        plan_resume(
            request(), transcript(("text", "Hi there.")), DROP, ResumeSettings(mode="off"), PrefillSupport()
        )


@pytest.mark.parametrize(
    ("model", "rejects"),
    [
        ("claude-sonnet-4-6", True),
        ("claude-opus-4-7", True),
        ("claude-opus-5", True),
        ("claude-haiku-4-5", False),
        ("claude-sonnet-4-5-20250929", False),
        ("claude-3-5-haiku-latest", False),
        ("my-proxy-model", False),
    ],
)
def test_prefill_guess_from_the_model_id(model: str, rejects: bool) -> None:
    """4.6 and later are known to reject prefill; unknown ids get the benefit of the doubt."""
    assert PrefillSupport().accepts(model) is not rejects


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "sometimes"},
        {"max_attempts": 0},
        {"idle_timeout": 0},
        {"backoff_initial": 9.0},
        {"on_thinking": "x"},
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any]) -> None:
    """Bad settings fail at the edge with a ConfigError naming the value."""
    with pytest.raises(ConfigError, match="resume"):
        ResumeSettings(**kwargs)
