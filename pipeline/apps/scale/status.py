"""``rillet jobs``: what the queue holds and how each job is doing, read straight from Redis."""

from __future__ import annotations

import time
from collections.abc import Mapping

import coredis

from pipeline.apps.scale._redis import ENDED, GROUP, Keys, RedisEventLog
from pipeline.errors import InputError

SHOWN = ("status", "owner", "epoch", "chars", "bytes", "output_tokens", "cost_usd", "error", "cancel")


async def job_lines(events: RedisEventLog, job_id: str) -> list[str]:
    """One job in detail, or one line saying it is unknown (never submitted, or expired)."""
    fields = await events.status(job_id)
    if not fields:
        return [f"{job_id}: unknown (never submitted, or expired after its finished TTL)"]
    lines = [f"job {job_id}"]
    for key in SHOWN:
        value = fields.get(key) or "-"
        label = "attempts" if key == "epoch" else key
        lines.append(f"  {label:<14}{value}")
    lines.append(f"  {'age':<14}{_age(fields)}")
    return lines


async def cancel_line(events: RedisEventLog, job_id: str, reason: str) -> str:
    """Asks for the job to be cancelled; one line saying what that did. An unknown job is an
    :class:`InputError` (exit status 2)."""
    found = await events.cancel(job_id, reason)
    if found == "queued":
        return f"job {job_id}: cancelled before it started"
    if found in ENDED:
        return f"job {job_id}: already ended ({found}); nothing to cancel"
    if found:
        return f"job {job_id}: cancel requested; its worker stops it and keeps the text so far"
    raise InputError(f"job {job_id}: unknown (never submitted, or expired after its finished TTL)")


async def overview(redis: coredis.Redis[bytes], events: RedisEventLog, limit: int = 50) -> list[str]:
    """Queue and dead-letter counts, then one line per job (up to ``limit``)."""
    keys = Keys(events.config.prefix)
    lines = []
    try:
        pending = await redis.xpending(keys.jobs, GROUP)
        leased = getattr(pending, "pending", 0)
        lines.append(f"queue: {await redis.xlen(keys.jobs)} entries, {leased} leased")
    except coredis.exceptions.ResponseError:
        lines.append("queue: empty (no worker has started yet)")
    lines.append(f"dead letters: {await redis.xlen(keys.dead)}")
    found = 0
    async for key in redis.scan_iter(match=f"{keys.prefix}:{{*}}:job", count=500):
        job_id = keys.job_id(key.decode())
        fields = await events.status(job_id)
        lines.append(_line(job_id, fields))
        found += 1
        if found >= limit:
            lines.append(f"(first {limit} shown)")
            break
    return lines


def _line(job_id: str, fields: Mapping[str, str]) -> str:
    cost = fields.get("cost_usd")
    money = f" ${float(cost):.4f}" if cost else ""
    return (
        f"{job_id}  {fields.get('status', '?'):<9} attempts={fields.get('epoch', '0')} "
        f"chars={fields.get('chars', '0')} owner={fields.get('owner', '-')}{money}"
    )


def _age(fields: Mapping[str, str]) -> str:
    created = fields.get("created")
    return f"{time.time() - float(created):.1f} s" if created else "-"
