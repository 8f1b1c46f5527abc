"""The Redis queue: a Stream read through one consumer group shared by every worker.

Keys (all under `prefix`, default `parley:`):

* `queue:stream` — due jobs; workers read with `XREADGROUP` and `XACK` + `XDEL` when handled.
* `queue:delayed` — sorted set of scheduled jobs (score = due time); moved into the stream when due by
  an atomic Lua script, so a job is moved once whichever worker moves it.
* `queue:job:{call}:{attempt}` — `SET NX` marker making `put` idempotent.
* `queue:canceled:{call}` — jobs of a canceled call are acked and skipped.

A worker that dies leaves its jobs pending in the group; after `claim_idle_s` another worker takes them
over with `XAUTOCLAIM`. A job a worker cannot dial now (overloaded, draining) is handed back at once
(`release`: acked and added again at the end of the stream, in one script).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from parley.calls.models import utcnow
from parley.calls.queue.base import CallQueue, Job
from parley.calls.queue.local import default_consumer
from parley.logging import get_logger

log = get_logger(__name__)

_MOVE_DUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, item in ipairs(items) do
  if redis.call('ZREM', KEYS[1], item) == 1 then
    redis.call('XADD', KEYS[2], '*', 'job', item)
  end
end
return #items
"""

# KEYS[1]: the stream. ARGV: group, entry id. Acks the entry and adds a copy at the end of the stream, in
# one step: a job handed back by two reapers at once is still handed back once.
_REQUEUE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  local entries = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  if #entries > 0 then
    redis.call('XADD', KEYS[1], '*', unpack(entries[1][2]))
    return 1
  end
end
return 0
"""

_MARKER_TTL_S = 30 * 24 * 3600


class RedisQueue(CallQueue):
    """Redis Streams + consumer group; reclaims a dead consumer's jobs with XAUTOCLAIM."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "parley:", consumer: str | None = None,
                 group: str = "dialers", claim_idle_s: float = 60.0, poll_s: float = 0.5) -> None:
        self.url = url
        self.prefix = prefix
        self.consumer = consumer or default_consumer()
        self.group = group
        self.claim_idle_s = claim_idle_s
        self.poll_s = poll_s
        self.stream = f"{prefix}queue:stream"
        self.delayed = f"{prefix}queue:delayed"
        self._redis: aioredis.Redis | None = None
        self._move: AsyncScript | None = None
        self._group_ready = False

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisQueue used before start()")
        return self._redis

    async def start(self) -> None:
        """Connect. An unreachable Redis is logged, not raised: the service starts, `/health` shows the
        reason, and calls accepted meanwhile stay `queued` in the store until the dialer's sweep queues them."""
        self._redis = aioredis.Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=3)
        self._move = self._redis.register_script(_MOVE_DUE)
        try:
            await self._ensure_group()
        except RedisError as exc:
            log.warning("redis queue not reachable yet", error=str(exc) or type(exc).__name__)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _marker(self, call_id: str, attempt: int) -> str:
        return f"{self.prefix}queue:job:{call_id}:{attempt}"

    def _canceled(self, call_id: str) -> str:
        return f"{self.prefix}queue:canceled:{call_id}"

    async def put(self, call_id: str, *, attempt: int = 1, due_at: datetime | None = None) -> bool:
        if not await self.redis.set(self._marker(call_id, attempt), "1", nx=True, ex=_MARKER_TTL_S):
            return False
        due = due_at or utcnow()
        item = json.dumps({"call_id": call_id, "attempt": attempt, "due": due.timestamp()})
        if due.timestamp() <= time.time():
            await self.redis.xadd(self.stream, {"job": item})
        else:
            await self.redis.zadd(self.delayed, {item: due.timestamp()})
        return True

    async def get(self, timeout: float) -> Job | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = await self._take(block_ms=0)
            if job is not None:
                return job
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            job = await self._take(block_ms=max(1, int(min(remaining, self.poll_s) * 1000)))
            if job is not None:
                return job
            if loop.time() >= deadline:
                return None

    async def _take(self, block_ms: int) -> Job | None:
        try:
            return await self._take_once(block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False  # Redis lost its data (restart without persistence): start over
            await self._ensure_group()
            return None

    async def _take_once(self, block_ms: int) -> Job | None:
        """Reclaim a dead consumer's job, else move due scheduled jobs and read a new one."""
        r = self.redis
        if not self._group_ready:
            await self._ensure_group()
        _, claimed, *_ = await r.xautoclaim(self.stream, self.group, self.consumer,
                                            min_idle_time=int(self.claim_idle_s * 1000), start_id="0-0",
                                            count=1)
        entries = [e for e in claimed if e and e[1]]
        if not entries:
            assert self._move is not None
            await self._move(keys=[self.delayed, self.stream], args=[time.time()])
            read: Any = await r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=1,
                                      block=block_ms or None)
            entries = [e for _, msgs in (read or []) for e in msgs]
        for entry_id, fields in entries:
            data = json.loads(fields["job"])
            job = Job(data["call_id"], int(data["attempt"]),
                      datetime.fromtimestamp(float(data["due"]), UTC), entry_id)
            if await r.exists(self._canceled(job.call_id)):
                await self.ack(job)
                continue
            return job
        return None

    async def ack(self, job: Job) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.xack(self.stream, self.group, job.token)
            p.xdel(self.stream, job.token)
            await p.execute()

    async def release(self, job: Job) -> None:
        """The entry moves to the end of the stream (a new id), for the next reader of any consumer."""
        await self.redis.register_script(_REQUEUE)(keys=[self.stream], args=[self.group, job.token])

    async def release_consumer(self, consumer: str) -> int:
        """Jobs `consumer` read but never acked go back to the end of the stream (each once), and the
        consumer leaves the group."""
        r = self.redis
        requeue = r.register_script(_REQUEUE)
        moved = 0
        try:
            pending = await r.xpending_range(self.stream, self.group, min="-", max="+", count=1000,
                                             consumername=consumer)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        for entry in pending:
            moved += int(await requeue(keys=[self.stream], args=[self.group, entry["message_id"]]))
        await r.xgroup_delconsumer(self.stream, self.group, consumer)
        if moved:
            log.warning("dial jobs of a lost worker handed back to the queue", worker=consumer, jobs=moved)
        return moved

    async def cancel(self, call_id: str) -> bool:
        r = self.redis
        await r.set(self._canceled(call_id), "1", ex=_MARKER_TTL_S)
        removed = 0
        async for item, _ in r.zscan_iter(self.delayed, match=f'*"call_id": "{call_id}"*'):
            removed += await r.zrem(self.delayed, item)
        waiting = 0
        async for _, fields in self._stream_entries():
            if json.loads(fields["job"])["call_id"] == call_id:
                waiting += 1
        return bool(removed or waiting)

    async def _stream_entries(self) -> AsyncIterator[tuple[str, dict[str, str]]]:
        """Every entry of the stream, in batches: (entry id, fields), decoded (`decode_responses=True`)."""
        last = "-"
        while True:
            # redis-py types replies for every client setting; with decode_responses=True they are str
            batch = cast(list[tuple[str, dict[str, str]]],
                         await self.redis.xrange(self.stream, min=last, count=500))
            if last != "-" and batch and batch[0][0] == last:
                batch = batch[1:]
            if not batch:
                return
            for entry in batch:
                yield entry
            last = batch[-1][0]

    async def depth(self) -> int:
        async with self.redis.pipeline(transaction=False) as p:
            p.xlen(self.stream)
            p.zcard(self.delayed)
            stream_len, delayed = await p.execute()
        return int(stream_len) + int(delayed)

    async def health(self) -> str:
        await self.redis.ping()
        return f"redis, {await self.depth()} waiting"
