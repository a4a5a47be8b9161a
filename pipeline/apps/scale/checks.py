"""What a job id and a stored request may be: checked where they come in and where a worker meets them.

A worker writes ``<out-dir>/<id>.md``, and Redis keys hold the id inside a ``{...}`` hash tag: an
id with a path separator, a leading dot or a brace could write outside the folder or name another
key. Anyone who can submit a job, or write to Redis, chooses the id, so it is checked, never
trusted: ``rillet submit --id`` refuses a bad one (exit status 2), and a worker that finds one in
the queue dead-letters the entry with the reason and builds nothing from it.
"""

from __future__ import annotations

import re
from typing import Any

JOB_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
"""A letter or digit, then up to 127 letters, digits, dots, underscores or hyphens."""

_JOB_ID = re.compile(JOB_ID_PATTERN)


def job_id_problem(job_id: str) -> str | None:
    """Why ``job_id`` is not a safe job id, or None when it is."""
    if _JOB_ID.fullmatch(job_id):
        return None
    return f"the job id {job_id!r} does not match {JOB_ID_PATTERN} (letters, digits, '.', '_', '-')"


def request_problem(request: Any) -> str | None:
    """Why a request read back from Redis cannot be sent, or None: its required fields, typed.

    The API checks the rest; these would fail inside the worker instead, with no reason recorded.
    """
    if not isinstance(request, dict):
        return f"its request is a JSON {type(request).__name__}, not an object"
    model = request.get("model")
    if not isinstance(model, str) or not model:
        return f"its request's 'model' must be a non-empty string, got {model!r}"
    max_tokens = request.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return f"its request's 'max_tokens' must be a positive integer, got {max_tokens!r}"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return f"its request's 'messages' must be a non-empty list, got {messages!r}"[:300]
    return None
