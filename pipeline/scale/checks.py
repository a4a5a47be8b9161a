"""What a job id may be: one safe pattern, checked where an id comes in and where a worker meets one.

A worker writes ``<out-dir>/<id>.md``, and Redis keys hold the id inside a ``{...}`` hash tag: an
id with a path separator, a leading dot or a brace could write outside the folder or name another
key. Anyone who can submit a job, or write to Redis, chooses the id, so it is checked, never
trusted: ``rillet submit --id`` refuses a bad one (exit status 2), and a worker that finds one in
the queue dead-letters the entry with the reason and builds nothing from it.
"""

from __future__ import annotations

import re

JOB_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
"""A letter or digit, then up to 127 letters, digits, dots, underscores or hyphens."""

_JOB_ID = re.compile(JOB_ID_PATTERN)


def job_id_problem(job_id: str) -> str | None:
    """Why ``job_id`` is not a safe job id, or None when it is."""
    if _JOB_ID.fullmatch(job_id):
        return None
    return f"the job id {job_id!r} does not match {JOB_ID_PATTERN} (letters, digits, '.', '_', '-')"
