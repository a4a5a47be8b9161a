"""The Redis scripts on a real server: fencing, idempotent retries, ids across takeovers, caps, leases."""

from __future__ import annotations

import pytest

from pipeline.apps.scale import Fenced, Frame, LogEntry, LogFull, Lost, RedisEventLog, RedisJobQueue

pytestmark = pytest.mark.anyio


def entries(epoch: int, first: int, count: int, data: bytes = b'{"x":1}') -> list[LogEntry]:
    return [LogEntry(seq, epoch, Frame("content_block_delta", data)) for seq in range(first, first + count)]


async def submitted(queue: RedisJobQueue) -> str:
    return await queue.submit({"model": "m", "max_tokens": 10, "messages": []})


async def test_a_takeover_fences_the_old_epoch_and_ids_keep_increasing(
    scale: tuple[RedisJobQueue, RedisEventLog],
) -> None:
    """After a second take, the first owner's append is refused and writes nothing."""
    queue, log = scale
    job = await submitted(queue)
    first = await log.take(job, "w1")
    await log.append(job, first.epoch, entries(first.epoch, 1, 3), chars=3)
    second = await log.take(job, "w2")
    assert (second.epoch, second.last_seq) == (first.epoch + 1, 3)
    with pytest.raises(Fenced):
        await log.append(job, first.epoch, entries(first.epoch, 4, 2), chars=5)
    await log.append(job, second.epoch, entries(second.epoch, 4, 2), chars=5)
    ids = [entry.id for entry in await log.range(job)]
    assert ids == ["1-1", "2-1", "3-1", "4-2", "5-2"]
    assert [entry.id for entry in await log.range(job, after="3-1")] == ["4-2", "5-2"]


async def test_a_retried_append_is_not_written_twice(scale: tuple[RedisJobQueue, RedisEventLog]) -> None:
    """A batch sent again (its reply lost) leaves one copy; an overlapping one adds only the new ids."""
    queue, log = scale
    job = await submitted(queue)
    take = await log.take(job, "w1")
    batch = entries(take.epoch, 1, 3)
    await log.append(job, take.epoch, batch, chars=3)
    await log.append(job, take.epoch, batch, chars=3)
    await log.append(job, take.epoch, entries(take.epoch, 2, 3), chars=4)
    assert [entry.seq for entry in await log.range(job)] == [1, 2, 3, 4]


async def test_the_byte_cap_refuses_the_whole_batch(scale: tuple[RedisJobQueue, RedisEventLog]) -> None:
    """Past the cap nothing of the batch lands: the job fails loudly instead of growing Redis."""
    queue, log = scale
    job = await submitted(queue)
    take = await log.take(job, "w1")
    with pytest.raises(LogFull):
        await log.append(job, take.epoch, entries(take.epoch, 1, 3, b"x" * 1_000_000), chars=3)
    assert await log.range(job) == []


async def test_finish_writes_one_end_and_starts_the_finished_ttl(
    scale: tuple[RedisJobQueue, RedisEventLog],
) -> None:
    """``finish`` is fenced like an append, and a finished job is not taken again."""
    queue, log = scale
    job = await submitted(queue)
    take = await log.take(job, "w1")
    end = LogEntry(1, take.epoch, Frame("end", b"{}"))
    with pytest.raises(Fenced):
        await log.finish(job, take.epoch - 1, end, "done", {})
    await log.finish(job, take.epoch, end, "done", {"outcome": "completed"})
    assert (await log.take(job, "w2")).status == "done"
    ttl = await log.redis.ttl(log.keys.log(job))
    assert 0 < ttl <= log.config.ttl_finished


async def test_renewal_is_fenced_once_another_consumer_reclaimed(
    scale: tuple[RedisJobQueue, RedisEventLog],
) -> None:
    """A bare XCLAIM would steal the job back; the scripted renewal refuses instead."""
    queue, _ = scale
    await submitted(queue)
    [lease] = await queue.lease("w1", 5, 0)
    assert await queue.renew("w1", lease)
    [taken] = await queue.reclaim("w2", 0, 5)
    assert taken.entry == lease.entry
    assert taken.reclaimed
    assert not await queue.renew("w1", lease)
    assert await queue.renew("w2", taken)


async def test_a_worker_never_leases_more_than_it_asks_for(
    scale: tuple[RedisJobQueue, RedisEventLog],
) -> None:
    """``count`` is the free slots: the rest stays in the queue for other workers."""
    queue, _ = scale
    for _ in range(5):
        await submitted(queue)
    assert len(await queue.lease("w1", 2, 0)) == 2
    assert len(await queue.lease("w2", 10, 0)) == 3


async def test_requeue_and_dead_letter_leave_no_pending_entry(
    scale: tuple[RedisJobQueue, RedisEventLog],
) -> None:
    """A requeued job is delivered again; a dead one lands in the dead-letter stream with its reason."""
    queue, log = scale
    job = await submitted(queue)
    [lease] = await queue.lease("w1", 1, 0)
    await queue.requeue(lease)
    [again] = await queue.lease("w2", 1, 0)
    assert again.job_id == job
    assert again.entry != lease.entry
    await queue.dead_letter(again, "poison")
    dead = await log.redis.xrange(queue.keys.dead)
    assert [(e.field_values[b"job"], e.field_values[b"reason"]) for e in dead] == [(job.encode(), b"poison")]
    assert (await log.redis.xpending(queue.keys.jobs, "workers")).pending == 0


async def test_an_append_past_a_lost_tail_is_refused(scale: tuple[RedisJobQueue, RedisEventLog]) -> None:
    """After a crash lost seqs 3-4, seq 5 would leave a hole: refused as ``Lost``, nothing written."""
    queue, log = scale
    job = await submitted(queue)
    take = await log.take(job, "w1")
    await log.append(job, take.epoch, entries(take.epoch, 1, 2), chars=2)
    with pytest.raises(Lost):
        await log.append(job, take.epoch, entries(take.epoch, 5, 2), chars=6)
    with pytest.raises(Lost):
        await log.finish(job, take.epoch, LogEntry(5, take.epoch, Frame("end", b"{}")), "done", {})
    assert [entry.seq for entry in await log.range(job)] == [1, 2]
    assert (await log.status(job))["status"] == "running"


async def test_a_lost_take_is_told_apart_from_a_takeover(scale: tuple[RedisJobQueue, RedisEventLog]) -> None:
    """An epoch above the stored one means Redis lost the take; taking again skips past it."""
    queue, log = scale
    job = await submitted(queue)
    await log.take(job, "w1")
    with pytest.raises(Lost):
        await log.append(job, 7, entries(7, 1, 1), chars=1)
    again = await log.take(job, "w1", after_epoch=7)
    assert again.epoch == 8
    await log.append(job, again.epoch, entries(again.epoch, 1, 1), chars=1)
    with pytest.raises(Fenced):
        await log.append(job, 2, entries(2, 2, 1), chars=2)


async def test_prune_forgets_only_idle_consumers_with_nothing_leased(
    scale: tuple[RedisJobQueue, RedisEventLog],
) -> None:
    """Every worker process adds a consumer; one holding a lease is kept whatever its idle time."""
    queue, _ = scale
    for _ in range(2):
        await submitted(queue)
    assert len(await queue.lease("holder", 1, 0)) == 1
    [done] = await queue.lease("finished", 1, 0)
    await queue.ack(done)
    assert await queue.prune(0.0) == 1
    consumers = await queue.redis.xinfo_consumers(queue.keys.jobs, "workers")
    assert [c[b"name"] for c in consumers] == [b"holder"]
    assert await queue.prune(3600.0) == 0
