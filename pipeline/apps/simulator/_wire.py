"""Byte-exact encoding of the Messages API's stream and bodies.

Events are ``event: NAME\\ndata: JSON\\n\\n`` with compact JSON (``separators=(",", ":")``) and raw
UTF-8 (no ``\\u`` escapes), as the real API sends them; ``ping`` and the in-stream ``error`` keep the
spaced JSON the recorded streams show. Delta events are assembled from pre-encoded byte prefixes so
the hot path is one ``json.dumps`` of a string.
"""

from __future__ import annotations

import json
from typing import Any

from ._plan import Block, ResponsePlan

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _string(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def event(name: str, data: Any) -> bytes:
    """One SSE event with compact JSON data."""
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_start(message_id: str, model: str, input_tokens: int) -> bytes:
    return event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage(input_tokens, 1),
            },
        },
    )


def block_start(index: int, block: Block) -> bytes:
    content: dict[str, Any]
    if block.type == "text":
        content = {"type": "text", "text": ""}
    elif block.type == "thinking":
        content = {"type": "thinking", "thinking": "", "signature": ""}
    else:
        content = {
            "type": "tool_use",
            "id": block.tool_id,
            "name": block.tool_name,
            "caller": {"type": "direct"},
            "input": {},
        }
    return event(
        "content_block_start", {"type": "content_block_start", "index": index, "content_block": content}
    )


_DELTA_KEYS = {"text": ("text_delta", "text"), "thinking": ("thinking_delta", "thinking")}
_DELTA_KEYS["tool_use"] = ("input_json_delta", "partial_json")
_DELTA_KEYS["signature"] = ("signature_delta", "signature")


def delta_prefix(index: int, kind: str) -> bytes:
    """The bytes of a ``content_block_delta`` up to its string value; see :func:`delta`."""
    delta_type, key = _DELTA_KEYS[kind]
    return (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":'
        % (index, delta_type.encode(), key.encode())
    )


def delta(prefix: bytes, value: str) -> bytes:
    return prefix + _string(value) + b"}}\n\n"


def block_stop(index: int) -> bytes:
    return b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n' % index


def message_delta(plan: ResponsePlan) -> bytes:
    u = usage(plan.input_tokens, plan.output_tokens)
    del u["service_tier"]
    return event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
            "usage": u,
        },
    )


def error_event(error_type: str, message: str) -> bytes:
    data = json.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data.encode() + b"\n\n"


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return _dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    )


def content_json(block: Block) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    try:
        value: Any = json.loads(block.text) if block.text else {}
    except ValueError:
        value = {}
    return {
        "type": "tool_use",
        "id": block.tool_id,
        "name": block.tool_name,
        "caller": {"type": "direct"},
        "input": value,
    }


def message_json(plan: ResponsePlan, message_id: str, model: str) -> dict[str, Any]:
    """The whole message, as a non-streaming response (and ``get_final_message()``) has it."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [content_json(b) for b in plan.blocks],
        "stop_reason": plan.stop_reason,
        "stop_sequence": None,
        "usage": usage(plan.input_tokens, plan.output_tokens),
    }


def message_body(plan: ResponsePlan, message_id: str, model: str) -> bytes:
    return _dumps(message_json(plan, message_id, model))
