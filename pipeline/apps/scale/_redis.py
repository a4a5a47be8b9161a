"""Redis Streams behind :class:`JobQueue` and :class:`EventLog` (reference/scale-out.md §6).

Keys (the ``{job}`` hash tag keeps a job's keys in one Cluster slot, so its scripts are legal):

- ``P:jobs``: the queue stream, consumer group ``workers``; one entry ``job=<id>`` per delivery.
- ``P:{id}:job``: a hash: ``request`` (JSON), ``status``, ``epoch``, ``owner``, ``last_seq``,
  ``bytes``, ``chars``, timestamps, the outcome, and ``cancel`` (the reason) once a cancel was asked.
- ``P:{id}:log``: the job's frames, entry id ``<seq>-<epoch>``, fields ``e`` (event) and ``d`` (JSON).
- ``P:dead``: the dead-letter stream, ``job``, ``reason``.
- ``P:cancel``: a pub/sub channel (no key): the id of each job a cancel was asked for, so the
  worker running it stops it at once; the ``cancel`` field is the durable record.

Every write a worker makes for a job goes through a script that first compares the epoch it was
given with the hash's: taking a job over bumps the epoch, so a stalled worker that wakes up is
refused (``FENCED``) and writes nothing. The epoch is the low half of each log id, so ids keep
increasing across takeovers, and an append retried after a lost reply is recognised (its ``seq``
is at or below ``last_seq``) and not written twice.

Redis can come back without its last writes: a machine crash between two AOF fsyncs under
``appendfsync everysec`` (a ``kill -9`` of Redis alone loses nothing: its writes are in the page
cache), or a failover to a lagging replica. That loss is a suffix, so the log is still a
consistent prefix, but a worker is now ahead of it: its next append would leave a hole. The
scripts refuse that (an append must start at ``last_seq + 1``, a ``take`` that vanished shows as
an epoch lower than the caller's) with :class:`Lost`, and the worker takes the job again and
resumes from what the log kept, under an epoch past every one it used, so an id a browser saw
from the lost tail never names other bytes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import coredis
from coredis.exceptions import StreamDuplicateConsumerGroupError
from coredis.retry import ConstantRetryPolicy, NoRetryPolicy
from coredis.tokens import PureToken

from pipeline.apps.scale.checks import request_problem
from pipeline.apps.scale.protocols import Fenced, Frame, Lease, LogEntry, LogFull, Lost, Malformed, Take
from pipeline.apps.scale.settings import RedisConfig
from pipeline.errors import ConfigError

log = logging.getLogger("rillet.scale")

GROUP = "workers"
HIDE_LOST = ConstantRetryPolicy((coredis.exceptions.ConnectionError, TimeoutError), retries=2, delay=0.01)
"""coredis's own default: a command whose connection broke is sent again on a new one."""

DEAD_MAXLEN = 10_000
"""The dead-letter stream keeps about this many entries (approximate trim): a record, not a store."""

ENDED = ("done", "dead", "cancelled")
"""Statuses a job never leaves: taking or cancelling it changes nothing."""

_TAKE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == 'done' or status == 'dead' or status == 'cancelled' then return {status} end
for _, name in ipairs({'epoch', 'last_seq'}) do
  local value = redis.call('HGET', KEYS[1], name)
  if value and not string.match(value, '^%d+$') then return {'malformed', name, value} end
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
if epoch <= tonumber(ARGV[3]) then epoch = tonumber(ARGV[3]) + 1 end
redis.call('HSET', KEYS[1], 'epoch', epoch, 'owner', ARGV[1], 'status', 'running', 'started', ARGV[2])
redis.call('PERSIST', KEYS[1])
return {'running', tostring(epoch), redis.call('HGET', KEYS[1], 'request'),
        redis.call('HGET', KEYS[1], 'last_seq') or '0', redis.call('HGET', KEYS[1], 'cancel') or ''}
"""

_APPEND = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then return {'fenced', epoch or ''} end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local size = bytes
local want = last + 1
for i = 5, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    if seq ~= want then return {'gap', tostring(last)} end
    want = want + 1
    size = size + #ARGV[i + 1] + #ARGV[i + 2]
  end
end
if size > tonumber(ARGV[3]) then return {'full', tostring(size)} end
for i = 5, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[2], ARGV[i] .. '-' .. ARGV[1], 'e', ARGV[i + 1], 'd', ARGV[i + 2])
    last = seq
  end
end
redis.call('HSET', KEYS[1], 'last_seq', last, 'bytes', size, 'chars', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {'ok', tostring(last)}
"""

_FINISH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then return {'fenced', epoch or ''} end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
if tonumber(ARGV[2]) > last + 1 then return {'gap', tostring(last)} end
if tonumber(ARGV[2]) > last then
  redis.call('XADD', KEYS[2], ARGV[2] .. '-' .. ARGV[1], 'e', ARGV[3], 'd', ARGV[4])
  redis.call('HSET', KEYS[1], 'last_seq', ARGV[2])
end
redis.call('HSET', KEYS[1], 'status', ARGV[5], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {'ok', ARGV[2]}
"""

_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'done' or status == 'dead' or status == 'cancelled' then return status or '' end
redis.call('HSETNX', KEYS[1], 'cancel', ARGV[1])
if status == 'queued' then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0') + 1
  local epoch = redis.call('HGET', KEYS[1], 'epoch')
  redis.call('XADD', KEYS[2], seq .. '-' .. epoch, 'e', ARGV[3], 'd', ARGV[4])
  redis.call('HSET', KEYS[1], 'last_seq', seq, 'status', 'cancelled', 'outcome', 'cancelled')
  redis.call('HSET', KEYS[1], 'finished', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
else
  local reason = redis.call('HGET', KEYS[1], 'cancel')
  redis.call('PUBLISH', ARGV[6], cjson.encode({job = ARGV[7], reason = reason}))
end
return status
"""

_RELEASE = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch ~= ARGV[1] then return {'fenced', epoch or ''} end
redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[2])
return {'ok', ''}
"""

_RENEW = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

_PRUNE = """
local gone = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone = gone + 1
  end
end
return gone
"""

_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then return redis.call('XADD', KEYS[1], '*', 'job', ARGV[3]) end
return ''
"""


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs = f"{prefix}:jobs"
        self.dead = f"{prefix}:dead"
        self.cancels = f"{prefix}:cancel"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:{{{job_id}}}:job"

    def log(self, job_id: str) -> str:
        return f"{self.prefix}:{{{job_id}}}:log"

    def job_id(self, key: str) -> str:
        """The id inside a ``P:{id}:job`` or ``P:{id}:log`` key (whatever it holds, braces included)."""
        return key.removeprefix(f"{self.prefix}:{{")[: -len("}:job")]


@asynccontextmanager
async def open_redis(config: RedisConfig, *, hide_lost: bool = True) -> AsyncIterator[coredis.Redis[bytes]]:
    """A client whose pool waits when exhausted; one line and :class:`ConfigError` if Redis is not there.

    coredis retries a command whose connection was lost, on a new one (``hide_lost``); a reader that
    must know when Redis went away (it may have come back without its last writes) turns that off.
    """
    policy = HIDE_LOST if hide_lost else NoRetryPolicy()
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        config.url, decode_responses=False, connect_timeout=5.0, max_connections=256, retry_policy=policy
    )
    try:
        async with client:
            try:
                await client.ping()
            except (coredis.exceptions.ConnectionError, OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"cannot reach Redis at {config.url!r}: {exc}; is redis-server running?"
                ) from exc
            except coredis.exceptions.ResponseError as exc:  # such as a database it does not have
                raise ConfigError(f"Redis at {config.url!r} refused the connection: {exc}") from exc
            yield client
    except BaseExceptionGroup as group:
        raise _alone(group) from None


def _alone(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """coredis's pool and pub/sub run task groups: an exception should reach the caller as itself."""
    return group.exceptions[0] if len(group.exceptions) == 1 else group


def _text(value: Any, errors: str = "strict") -> str:
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)


class RedisJobQueue:
    """:class:`~pipeline.apps.scale.protocols.JobQueue` on a stream with one consumer group."""

    def __init__(self, redis: coredis.Redis[bytes], config: RedisConfig) -> None:
        self.redis = redis
        self.keys = Keys(config.prefix)
        self._renew = redis.register_script(_RENEW)
        self._ack = redis.register_script(_ACK)
        self._prune = redis.register_script(_PRUNE)
        self._cursor = "0-0"

    async def ensure_group(self) -> None:
        """Creates the stream and its group once; a second call finds them there."""
        try:
            await self.redis.xgroup_create(self.keys.jobs, GROUP, "0", mkstream=True)
        except StreamDuplicateConsumerGroupError:
            pass

    async def submit(self, request: Mapping[str, Any], job_id: str | None = None) -> str:
        job_id = job_id or uuid.uuid4().hex
        now = str(time.time())
        fields = {"request": json.dumps(request), "status": "queued", "epoch": "0", "created": now}
        await self.redis.hset(self.keys.job(job_id), fields)
        await self.redis.xadd(self.keys.jobs, {"job": job_id})
        return job_id

    async def lease(self, consumer: str, count: int, block_s: float) -> list[Lease]:
        block = int(block_s * 1000) or None  # BLOCK 0 would wait forever
        reply = await self.redis.xreadgroup(
            GROUP, consumer, count=count, block=block, streams={self.keys.jobs: ">"}
        )
        if not reply:
            return []
        return [_lease(entry, reclaimed=False) for entries in reply.values() for entry in entries]

    async def reclaim(self, consumer: str, min_idle_s: float, count: int) -> list[Lease]:
        cursor, entries, *_ = await self.redis.xautoclaim(
            self.keys.jobs, GROUP, consumer, int(min_idle_s * 1000), self._cursor, count=count
        )
        self._cursor = _text(cursor)
        return [_lease(entry, reclaimed=True) for entry in entries if entry.field_values]

    async def renew(self, consumer: str, lease: Lease) -> bool:
        owned: Any = await self._renew(keys=[self.keys.jobs], args=[GROUP, consumer, lease.entry])
        return bool(owned)

    async def ack(self, lease: Lease) -> None:
        await self._ack(keys=[self.keys.jobs], args=[GROUP, lease.entry, ""])

    async def requeue(self, lease: Lease) -> None:
        await self._ack(keys=[self.keys.jobs], args=[GROUP, lease.entry, lease.job_id])

    async def dead_letter(self, lease: Lease, reason: str) -> None:
        await self.redis.xadd(
            self.keys.dead,
            {"job": lease.job_id, "reason": reason, "at": str(time.time())},
            trim_strategy=PureToken.MAXLEN,
            threshold=DEAD_MAXLEN,
            trim_operator=PureToken.APPROXIMATELY,
        )
        await self.ack(lease)

    async def prune(self, idle_s: float) -> int:
        """Forgets consumers idle this long with nothing pending: every worker process adds one.

        One script, so a consumer that leases a job meanwhile is not deleted with its lease (it would
        never be redelivered); a live consumer that was idle is simply created again by its next read.
        """
        gone: Any = await self._prune(keys=[self.keys.jobs], args=[GROUP, str(int(idle_s * 1000))])
        return int(gone)


def _lease(entry: Any, *, reclaimed: bool) -> Lease:
    """A delivery; one whose entry names no job (written by hand) carries the problem instead."""
    identifier = _text(entry.identifier)
    job = entry.field_values.get(b"job")
    if job is None:
        fields = ", ".join(repr(_text(name, "replace")) for name in entry.field_values)
        problem = f"the queue entry {identifier} has no 'job' field (its fields: {fields or 'none'})"
        return Lease("", identifier, reclaimed, problem)
    try:
        return Lease(bytes(job).decode(), identifier, reclaimed)
    except UnicodeDecodeError:
        return Lease("", identifier, reclaimed, f"the queue entry {identifier}'s job id is not UTF-8")


def _request(raw: Any) -> tuple[dict[str, Any], str | None]:
    """The job's request, or why it cannot be one (the job is then dead-lettered with that reason)."""
    if raw is None:
        return {}, "it has no 'request' field"
    try:
        request = json.loads(raw)
    except ValueError as exc:
        return {}, f"its request is not JSON ({exc})"
    problem = request_problem(request)
    return (request, None) if problem is None else ({}, problem)


class RedisEventLog:
    """:class:`~pipeline.apps.scale.protocols.EventLog`: a stream per job, every write fenced by its epoch."""

    def __init__(self, redis: coredis.Redis[bytes], config: RedisConfig) -> None:
        self.redis = redis
        self.config = config
        self.keys = Keys(config.prefix)
        self._take = redis.register_script(_TAKE)
        self._append = redis.register_script(_APPEND)
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(_RELEASE)
        self._cancel = redis.register_script(_CANCEL)

    async def take(self, job_id: str, consumer: str, after_epoch: int = 0) -> Take:
        args = [consumer, str(time.time()), str(after_epoch)]
        reply: Any = await self._take(keys=[self.keys.job(job_id)], args=args)
        status = _text(reply[0])
        if status == "malformed":
            raise Malformed(f"its {_text(reply[1])} field {_text(reply[2])!r} is not a whole number")
        if status != "running":
            return Take(0, 0, {}, 0, status)
        epoch = int(reply[1])
        request, problem = _request(reply[2])
        return Take(epoch, epoch, request, int(reply[3]), status, _text(reply[4]) or None, problem)

    async def append(self, job_id: str, epoch: int, entries: Sequence[LogEntry], chars: int) -> None:
        args: list[str | bytes] = [
            str(epoch),
            str(self.config.ttl_running),
            str(self.config.byte_cap),
            str(chars),
        ]
        for entry in entries:
            args += [str(entry.seq), entry.frame.event, entry.frame.data]
        reply: Any = await self._append(keys=[self.keys.job(job_id), self.keys.log(job_id)], args=args)
        _check(reply, job_id, epoch, self.config.byte_cap)

    async def finish(
        self, job_id: str, epoch: int, end: LogEntry, status: str, fields: Mapping[str, str]
    ) -> None:
        args: list[str | bytes] = [str(epoch), str(end.seq), end.frame.event, end.frame.data, status]
        args.append(str(self.config.ttl_finished))
        for key, value in {**fields, "finished": str(time.time())}.items():
            args += [key, value]
        reply: Any = await self._finish(keys=[self.keys.job(job_id), self.keys.log(job_id)], args=args)
        _check(reply, job_id, epoch, self.config.byte_cap)

    async def release(self, job_id: str, epoch: int, reason: str) -> None:
        reply: Any = await self._release(keys=[self.keys.job(job_id)], args=[str(epoch), reason])
        _check(reply, job_id, epoch, self.config.byte_cap)

    async def cancel(self, job_id: str, reason: str) -> str:
        """Records the request, once; a queued job ends here, a running one's worker is told at once."""
        # Here, not at the top: it loads the SDK's types, and `rillet jobs` rarely cancels.
        from pipeline.apps.scale.frames import end_frame

        end = end_frame("cancelled", reason, None)
        args: list[str | bytes] = [reason, str(time.time()), end.event, end.data]
        args += [str(self.config.ttl_finished), self.keys.cancels, job_id]
        return _text(await self._cancel(keys=[self.keys.job(job_id), self.keys.log(job_id)], args=args))

    async def cancel_requested(self, job_id: str) -> str | None:
        reason = await self.redis.hget(self.keys.job(job_id), "cancel")
        return None if reason is None else _text(reason)

    async def range(self, job_id: str, after: str | None = None) -> list[LogEntry]:
        start = f"({after}" if after else "-"
        return [to_entry(entry) for entry in await self.redis.xrange(self.keys.log(job_id), start, "+")]

    async def has(self, job_id: str, entry_id: str) -> bool:
        return bool(await self.redis.xrange(self.keys.log(job_id), entry_id, entry_id, count=1))

    async def status(self, job_id: str) -> dict[str, str]:
        fields = await self.redis.hgetall(self.keys.job(job_id))
        return {_text(k): _text(v) for k, v in fields.items()}


class RedisCancelSignals:
    """:class:`~pipeline.apps.scale.protocols.CancelSignals` on one pub/sub channel per prefix.

    One subscription per worker process, whatever its number of jobs: the channel carries job ids
    and each worker ignores those it does not run. Pub/sub is at most once (a message published
    while the connection is down is gone), which is why the ``cancel`` field is the record and this
    only the prompt path: coredis subscribes again after a lost connection, and every
    (re)subscription makes the worker check the field of each job it runs.
    """

    def __init__(self, redis: coredis.Redis[bytes], config: RedisConfig) -> None:
        self.redis = redis
        self.channel = Keys(config.prefix).cancels

    async def listen(
        self, cancel: Callable[[str, str], None], subscribed: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            async with self.redis.pubsub(channels=[self.channel]) as pubsub:
                async for message in pubsub:
                    if message["type"] == "subscribe":
                        await subscribed()
                    elif message["type"] == "message":
                        announced = _announcement(message["data"])
                        if announced is None:
                            log.warning("ignored a malformed cancel announcement: %r", message["data"])
                        else:
                            cancel(*announced)
        except BaseExceptionGroup as group:
            raise _alone(group) from None


def _announcement(data: Any) -> tuple[str, str] | None:
    """A cancel announcement's job id and reason; None for anything else published on the channel."""
    try:
        request = json.loads(data)
    except ValueError:
        return None
    if isinstance(request, dict):
        job, reason = request.get("job"), request.get("reason")
        if isinstance(job, str) and isinstance(reason, str):
            return job, reason
    return None


class RedisLogTail:
    """:class:`~pipeline.apps.scale.protocols.LogTail`: one ``XREAD BLOCK`` over every followed log.

    ``blocking`` is a client only this tail uses, one read at a time, so a replica holds one
    blocked connection whatever its number of browsers; opened with ``hide_lost=False``, since a
    lost connection means Redis may be back without tails the replica has. The read also covers a
    small stream of the replica's own, ``P:replica:<name>:wake``: :meth:`interrupt` adds to it, so
    a read re-issued with a new set of logs never waits out its block with the old one. Unlike
    ``CLIENT UNBLOCK``, that cannot race a read not yet sent: the read asks for entries after the
    last one it saw, and gets the new one at once.
    """

    WAKE_TTL_S = 3600
    """A replica's wake stream (one entry) outlives its last interrupt by this long."""

    def __init__(
        self, blocking: coredis.Redis[bytes], redis: coredis.Redis[bytes], config: RedisConfig, name: str
    ) -> None:
        self.blocking = blocking
        self.redis = redis
        self.keys = Keys(config.prefix)
        self.wake_key = f"{config.prefix}:replica:{name}:wake"
        self._wake_id = "0-0"

    async def read(self, after: Mapping[str, str], count: int, block_s: float) -> dict[str, list[LogEntry]]:
        streams = {self.keys.log(job_id): entry_id for job_id, entry_id in after.items()}
        streams[self.wake_key] = self._wake_id
        reply = await self.blocking.xread(streams, count=count, block=max(1, int(block_s * 1000)))
        found: dict[str, list[LogEntry]] = {}
        for key, entries in (reply or {}).items():
            name = _text(key)
            if name == self.wake_key:
                self._wake_id = _text(entries[-1].identifier)
            else:
                found[self.keys.job_id(name)] = [to_entry(entry) for entry in entries]
        return found

    async def interrupt(self) -> None:
        await self.redis.xadd(self.wake_key, {"w": "1"}, trim_strategy=PureToken.MAXLEN, threshold=1)
        await self.redis.expire(self.wake_key, self.WAKE_TTL_S)

    async def close(self) -> None:
        await self.redis.delete([self.wake_key])


def to_entry(entry: Any) -> LogEntry:
    """A stored stream entry as a :class:`LogEntry`; :class:`Malformed` if a hand-made one lacks a field."""
    seq, epoch = _text(entry.identifier).split("-")
    values = entry.field_values
    if b"e" not in values or b"d" not in values:
        raise Malformed(f"its log entry {_text(entry.identifier)} lacks the 'e' or 'd' field")
    try:
        event = bytes(values[b"e"]).decode()
    except UnicodeDecodeError:
        raise Malformed(f"its log entry {_text(entry.identifier)}'s event name is not UTF-8") from None
    return LogEntry(int(seq), int(epoch), Frame(event, bytes(values[b"d"])))


def _check(reply: Any, job_id: str, epoch: int, cap: int) -> None:
    verdict = _text(reply[0])
    if verdict == "fenced":
        stored = _text(reply[1])
        if stored and int(stored) < epoch:
            raise Lost(f"job {job_id}'s epoch went back from {epoch} to {stored}: Redis lost our take")
        raise Fenced(f"job {job_id} was taken over (epoch {stored!r}, ours {epoch})")
    if verdict == "gap":
        raise Lost(f"job {job_id}'s log ends at seq {_text(reply[1])}: Redis lost the writes after it")
    if verdict == "full":
        raise LogFull(f"job {job_id}'s log would reach {_text(reply[1])} bytes, past its cap of {cap}")
