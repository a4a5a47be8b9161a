"""Request parsing and validation, answering with the real API's error types and messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._models import supports_prefill
from ._text import count_tokens

PREFILL_UNSUPPORTED = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)
TRAILING_WHITESPACE = "messages: final assistant content cannot end with trailing whitespace"


class ApiError(Exception):
    """An error the API answers with ``{"type":"error","error":{"type":..,"message":..}}``."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation turn: ``text`` joins its text blocks; ``all_text`` everything countable."""

    role: str
    text: str
    all_text: str


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    model: str
    max_tokens: int
    stream: bool
    system: str
    messages: tuple[Message, ...]
    tools: tuple[dict[str, Any], ...]
    thinking_budget: int | None
    """None: thinking off; otherwise the most thinking tokens allowed."""
    input_tokens: int


def _block_text(block: Any, *, text_only: bool) -> str:
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if text_only:
        return ""
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "tool_use":
        return json.dumps(block.get("input", {}))
    if kind == "tool_result":
        return _content_text(block.get("content", ""), text_only=False)
    return ""


def _content_text(content: Any, *, text_only: bool) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_block_text(b, text_only=text_only) for b in content)
    return ""


def _is_empty(content: Any) -> bool:
    return bool(content == "" or content == [])


def parse_request(raw: bytes | dict[str, Any]) -> ParsedRequest:
    """Parse and validate a ``POST /v1/messages`` body; raise :class:`ApiError` (400) if invalid."""
    if isinstance(raw, dict):
        body: Any = raw
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            raise invalid(
                "There was an error parsing the body of your request. It is not valid JSON."
            ) from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object.")
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            raise invalid(f"{field}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise invalid("model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    raw_messages = body["messages"]
    if not isinstance(raw_messages, list):
        raise invalid("messages: Input should be a valid list")
    if not raw_messages:
        raise invalid("messages: at least one message is required")
    messages: list[Message] = []
    for i, m in enumerate(raw_messages):
        if not isinstance(m, dict):
            raise invalid(f"messages.{i}: Input should be a valid dictionary")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in m:
            raise invalid(f"messages.{i}.content: Field required")
        content = m["content"]
        if not isinstance(content, (str, list)):
            raise invalid(f"messages.{i}.content: Input should be a valid string or list")
        final_assistant = i == len(raw_messages) - 1 and role == "assistant"
        if _is_empty(content) and not final_assistant:
            raise invalid(
                f"messages.{i}: all messages must have non-empty content"
                " except for the optional final assistant message"
            )
        messages.append(
            Message(role, _content_text(content, text_only=True), _content_text(content, text_only=False))
        )
    last = messages[-1]
    if last.role == "assistant":
        if not supports_prefill(model):
            raise invalid(PREFILL_UNSUPPORTED)
        if last.text != last.text.rstrip():
            raise invalid(TRAILING_WHITESPACE)
    system = _content_text(body.get("system", ""), text_only=True)
    tools_raw = body.get("tools") or []
    tools = tuple(t for t in tools_raw if isinstance(t, dict)) if isinstance(tools_raw, list) else ()
    thinking = body.get("thinking")
    budget: int | None = None
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        value = thinking.get("budget_tokens")
        budget = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else max_tokens
    input_tokens = (
        3
        + count_tokens(system)
        + sum(3 + count_tokens(m.all_text) for m in messages)
        + (count_tokens(json.dumps(list(tools))) if tools else 0)
    )
    return ParsedRequest(
        model=model,
        max_tokens=max_tokens,
        stream=body.get("stream") is True,
        system=system,
        messages=tuple(messages),
        tools=tools,
        thinking_budget=budget,
        input_tokens=input_tokens,
    )
