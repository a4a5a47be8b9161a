"""What each benchmark request asks: synthetic prompts sized to a token count, or prompts from JSONL.

Synthetic prompts are made of common English words, one token each for Claude's tokenizer and the
simulator alike, seeded per request index so every worker process builds the same request for the
same index and two runs with one seed send the same prompts. The token count is a plan, not a
measurement: the results report the input tokens the API's usage gives.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

FRAMING_TOKENS = 6
"""Tokens the API adds around one user message (the simulator counts 3 + 3)."""

CHARS_PER_TOKEN = 4.0
"""For the pre-run estimate of a JSONL prompt's size only; the results use the API's usage."""

_INSTRUCTION = "please write a long detailed report that continues from these words".split()

_WORDS = (
    "river stone water field light green house black white north south river town road hill rain "
    "wind tree leaf bird fish boat bank bridge city farm wheat bread salt iron wood fire cold warm "
    "summer winter spring autumn morning evening night day year month week hour mountain valley "
    "forest lake sea shore island coast harbor market church school garden window door table chair"
).split()


@dataclass(frozen=True, slots=True)
class Workload:
    """Request bodies by index: synthetic, or a JSONL file's prompts cycled in order."""

    model: str
    max_tokens: int
    input_tokens: int = 256
    input_tokens_sd: float = 0.0
    seed: int = 0
    prompts: tuple[dict[str, Any], ...] = ()

    def request(self, index: int, *, max_tokens: int | None = None) -> dict[str, Any]:
        """The Messages API body of request ``index``; ``max_tokens`` overrides (warm-up)."""
        if self.prompts:
            body = dict(self.prompts[index % len(self.prompts)])
        else:
            body = {"messages": [{"role": "user", "content": self.synthetic_prompt(index)}]}
        body["model"] = self.model
        body["max_tokens"] = max_tokens or body.get("max_tokens") or self.max_tokens
        return body

    def planned_input_tokens(self, index: int) -> int:
        """The prompt's size in tokens as planned, for the cost estimate."""
        if self.prompts:
            text = json.dumps(self.prompts[index % len(self.prompts)].get("messages"))
            system = json.dumps(self.prompts[index % len(self.prompts)].get("system", ""))
            return FRAMING_TOKENS + round((len(text) + len(system)) / CHARS_PER_TOKEN)
        return FRAMING_TOKENS + len(self.synthetic_prompt(index).split())

    def planned_output_tokens(self, index: int) -> int:
        if self.prompts:
            return int(self.prompts[index % len(self.prompts)].get("max_tokens") or self.max_tokens)
        return self.max_tokens

    def synthetic_prompt(self, index: int) -> str:
        """``input_tokens`` (mean, spread ``input_tokens_sd``) minus the framing, seeded by index."""
        rng = random.Random(f"prompt:{self.seed}:{index}")
        size = self.input_tokens
        if self.input_tokens_sd:
            size = round(rng.gauss(self.input_tokens, self.input_tokens_sd))
        words = max(len(_INSTRUCTION) + 1, size - FRAMING_TOKENS)
        return " ".join([*_INSTRUCTION, *rng.choices(_WORDS, k=words - len(_INSTRUCTION))])


def load_prompts(path: Path) -> tuple[dict[str, Any], ...]:
    """Request bodies from a JSONL file: ``prompt`` or ``messages``, optional ``system``, ``max_tokens``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the prompts file: {exc}") from exc
    bodies = [_body(path, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not bodies:
        raise InputError(f"{path}: no prompts: expected one JSON object a line with 'prompt' or 'messages'")
    return tuple(bodies)


def _body(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}:{number}: expected a JSON object, got {type(data).__name__}")
    if isinstance(data.get("prompt"), str) and data["prompt"]:
        body: dict[str, Any] = {"messages": [{"role": "user", "content": data["prompt"]}]}
    elif isinstance(data.get("messages"), list) and data["messages"]:
        body = {"messages": data["messages"]}
    else:
        raise InputError(f"{path}:{number}: expected a non-empty 'prompt' string or 'messages' list")
    if isinstance(data.get("system"), str | list):
        body["system"] = data["system"]
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InputError(f"{path}:{number}: max_tokens must be an integer >= 1, got {max_tokens!r}")
        body["max_tokens"] = max_tokens
    return body
