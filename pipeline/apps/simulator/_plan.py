"""What a request's answer contains: blocks, stop reason and usage, decided before any byte is sent.

Everything here is a pure function of the request and the settings (never of time or ids), which
is what makes the simulator deterministic and lets :func:`reference_text` tell tests the answer.

**Resume modes.** *prefill*: the last turn is the assistant's; its text (rstripped by the client)
is located in this prompt's text and the answer is the rest, starting with the whitespace the
client stripped, so ``prefix + answer`` is the uninterrupted text. *continue*: the last turn is a
user turn that asks to continue (it matches :data:`CONTINUE_RE`) right after an assistant turn;
the answer first restates the partial's last 0 to 12 words (seeded; header
``x-rillet-overlap-words`` forces it), as a real model tends to, then carries on. The prompt seed of
both is that of the conversation before the partial, so it matches the original request's. If the
partial is not found (after whitespace normalisation), the answer is fresh prose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

from ._scenarios import SCENARIOS, Scenario
from ._settings import SimulatorSettings
from ._text import build_text, count_tokens, natural_tokens, take_tokens
from ._topic import topic_of
from ._validation import Message, ParsedRequest, parse_request

CONTINUE_RE = re.compile(r"\b(?:continue|cut off|interrupted|left off|keep going)\b", re.IGNORECASE)
"""A user turn right after an assistant turn that matches this is a request to continue it."""

MAX_OVERLAP_WORDS = 12

Mode = Literal["fresh", "prefill", "continue"]


@dataclass(frozen=True, slots=True)
class Block:
    """One content block; ``text`` is the text, the thinking, or the tool input JSON (maybe cut)."""

    type: Literal["text", "thinking", "tool_use"]
    text: str
    tokens: int
    signature: str = ""
    tool_id: str = ""
    tool_name: str = ""


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    seed: int
    mode: Mode
    blocks: tuple[Block, ...]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    thinking_tokens: int
    prefix_matched: bool | None
    """Continuations only: whether the partial was found in this prompt's text."""
    overlap_text: str
    """Continue mode only: the restated words at the start of the answer."""

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.blocks if b.type == "text")

    @property
    def is_continuation(self) -> bool:
        return self.mode != "fresh"


def _hash_int(*parts: object) -> int:
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def prompt_seed(req: ParsedRequest, prompt: tuple[Message, ...], settings_seed: int) -> int:
    """Seed of a prompt: its user turns, the system prompt and the model, plus the settings' seed."""
    return _hash_int(settings_seed, req.model, req.system, [m.all_text for m in prompt if m.role == "user"])


def locate(full: str, prefix: str) -> int | None:
    """Offset in ``full`` just after ``prefix``, comparing whitespace runs as equal; None if absent."""
    if full.startswith(prefix):
        return len(prefix)
    i = j = 0
    n, m = len(full), len(prefix)
    while j < m:
        if prefix[j].isspace():
            if i >= n or not full[i].isspace():
                return None
            while j < m and prefix[j].isspace():
                j += 1
            while i < n and full[i].isspace():
                i += 1
        elif i < n and full[i] == prefix[j]:
            i += 1
            j += 1
        else:
            return None
    return i


def words_back(text: str, end: int, k: int) -> int:
    """Start offset of the ``k``-th word counting back from ``end`` (a word cut at ``end`` is one)."""
    pos = end
    for _ in range(k):
        while pos > 0 and text[pos - 1].isspace():
            pos -= 1
        while pos > 0 and not text[pos - 1].isspace():
            pos -= 1
    return pos


def detect_mode(req: ParsedRequest) -> tuple[Mode, tuple[Message, ...], str]:
    """The resume mode of ``req``, the prompt turns its seed comes from, and the partial text."""
    msgs = req.messages
    if msgs[-1].role == "assistant":
        return "prefill", msgs[:-1], msgs[-1].text
    if len(msgs) >= 2 and msgs[-2].role == "assistant" and CONTINUE_RE.search(msgs[-1].text):
        return "continue", msgs[:-2], msgs[-2].text.rstrip()
    return "fresh", msgs, ""


def _tool_input(req: ParsedRequest, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A tool call on the request's first tool, with input that fits its schema's properties."""
    words = ("river", "harbour", "archive", "market", "1850", "northern", "ledger", "survey")
    if not req.tools:
        return "get_report_data", {"topic": " ".join(rng.sample(words, 2)), "max_results": rng.randint(3, 20)}
    tool = req.tools[0]
    schema = tool.get("input_schema") or {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    value: dict[str, Any] = {}
    for key, spec in (props or {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind in ("integer", "number"):
            value[key] = rng.randint(1, 100)
        elif kind == "boolean":
            value[key] = rng.random() < 0.5
        elif kind == "array":
            value[key] = rng.sample(words, 2)
        elif kind == "object":
            value[key] = {}
        else:
            value[key] = " ".join(rng.sample(words, 2))
    return str(tool.get("name", "tool")), value


def build_plan(
    req: ParsedRequest,
    scenario: Scenario,
    settings: SimulatorSettings,
    *,
    overlap_words: int | None = None,
) -> ResponsePlan:
    """Decide the whole answer to ``req`` under ``scenario``."""
    mode, prompt, partial = detect_mode(req)
    seed = prompt_seed(req, prompt, settings.seed)
    budget = req.max_tokens
    blocks: list[Block] = []
    stop_reason = "end_turn"
    thinking_tokens = 0

    if scenario.thinking or req.thinking_budget is not None:
        limit = min(budget, req.thinking_budget or budget)
        thought = build_text("thinking", seed, limit)
        sig = base64.b64encode(hashlib.sha256(f"signature:{seed}".encode()).digest() * 2).decode()
        blocks.append(Block("thinking", thought.text, thought.tokens, signature=sig))
        thinking_tokens = thought.tokens
        budget -= thought.tokens

    kind = scenario.text
    natural = natural_tokens(kind, seed, settings.report_tokens)
    topic = next((topic_of(m.text) for m in prompt if m.role == "user"), "")
    prefix_matched: bool | None = None
    overlap_text = ""
    text = ""
    complete = True
    if budget > 0:
        if mode == "fresh":
            built = build_text(kind, seed, budget, natural, topic)
            text, complete = built.text, built.complete
        else:
            full = build_text(kind, seed, count_tokens(partial) + budget + 64, natural, topic)
            cut = locate(full.text, partial)
            prefix_matched = cut is not None
            if cut is None:
                alt = _hash_int(seed, partial)
                other = build_text(
                    "report", alt, budget, natural_tokens("report", alt, settings.report_tokens)
                )
                text = ("\n\n" if mode == "prefill" else "") + other.text
                complete = other.complete
            else:
                start = cut
                if mode == "continue":
                    k = overlap_words
                    if k is None:
                        k = random.Random(f"overlap:{seed}:{len(partial)}").randint(0, MAX_OVERLAP_WORDS)
                    start = words_back(full.text, cut, k)
                    overlap_text = full.text[start:cut]
                rest = full.text[start:]
                text, _ = take_tokens(rest, budget)
                complete = full.complete and len(text) == len(rest)
        n_text = count_tokens(text)
        blocks.append(Block("text", text, n_text))
        budget -= n_text
    else:
        complete = False  # thinking used the whole budget
    if not complete or (scenario.tool_use and budget <= 0):
        stop_reason = "max_tokens"
    elif scenario.tool_use:
        rng = random.Random(f"tool:{seed}")
        name, value = _tool_input(req, rng)
        payload = json.dumps(value)
        cut_payload, n = take_tokens(payload, budget)
        tool_id = "toolu_01" + hashlib.sha256(f"tool:{seed}".encode()).hexdigest()[:22]
        blocks.append(Block("tool_use", cut_payload, n, tool_id=tool_id, tool_name=name))
        stop_reason = "tool_use" if len(cut_payload) == len(payload) else "max_tokens"

    output = sum(b.tokens for b in blocks)
    return ResponsePlan(
        seed=seed,
        mode=mode,
        blocks=tuple(blocks),
        stop_reason=stop_reason,
        input_tokens=req.input_tokens,
        output_tokens=output,
        thinking_tokens=thinking_tokens,
        prefix_matched=prefix_matched,
        overlap_text=overlap_text,
    )


def reference_plan(
    body: dict[str, Any], settings: SimulatorSettings | None = None, *, scenario: str | None = None
) -> ResponsePlan:
    settings = settings or SimulatorSettings()
    return build_plan(parse_request(body), SCENARIOS[scenario or settings.scenario], settings)


def reference_text(
    body: dict[str, Any], settings: SimulatorSettings | None = None, *, scenario: str | None = None
) -> str:
    """The text-block text the simulator streams for ``body`` when nothing goes wrong.

    For an original request this is the whole uninterrupted text, which a client that resumed
    after drops must end up with (given the same ``max_tokens`` budget overall); for a
    continuation body it is the continuation alone. ``scenario`` stands for the
    ``x-rillet-scenario`` header. Raises :class:`ApiError` for a body the server would reject.
    """
    return reference_plan(body, settings, scenario=scenario).text
