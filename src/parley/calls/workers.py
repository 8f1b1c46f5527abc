"""The workers' registry and leases, in Redis: who runs calls, where, and who is gone.

Keys (under `prefix`, default `parley:`):

* `workers:leases` — sorted set, member = worker id, score = lease expiry (ms since the epoch).
* `workers:info:{id}` — the worker's card as JSON (`WorkerInfo`), rewritten with every heartbeat.

A worker renews its lease every `heartbeat_s` (`Heartbeat`, with its slots' leases, see `calls/slots.py`).
A worker whose lease ran out is *lost*: `WorkerRegistry.claim_lost()` removes it from the lease set in a
Lua script, so exactly one process (any API or worker running a `Reaper`) handles each loss. The reaper
closes the lost worker's active calls `failed` with reason `worker_lost` — their transcripts so far are
already stored, and go out with the `call.failed` webhook and the conversation file — and hands the dial
jobs it had taken but not dialed back to the queue, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from parley.calls import metrics
from parley.logging import get_logger
from parley.support.taskset import TaskSet

log = get_logger(__name__)

#: The reason written on calls of a worker whose lease expired.
WORKER_LOST = "worker_lost"

_CLAIM_LOST = """
local lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {}
for _, id in ipairs(lost) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    table.insert(out, id)
  end
end
return out
"""


@dataclass
class WorkerInfo:
    """A worker's card in the registry."""

    id: str
    sip: str  #: host:port of its SIP endpoint ("" for a worker without one)
    capacity: int  #: NUM_AGENTS: calls it runs at once
    live: int = 0  #: calls running now
    state: str = "running"  #: running | draining (| lost, when read after its lease ran out)
    health_url: str = ""  #: its side port's /health, when it has one
    loop_busy: float = 0.0  #: share of a core its event loop used over the last 5 s (MAX_LOOP_BUSY refuses)
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = 0.0
    lease_until: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> WorkerInfo:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class WorkerRegistry:
    """Read and write the registry; `claim_lost` hands each expired worker to exactly one caller."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "parley:", lease_s: float = 10.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lease_s = lease_s
        self.leases = f"{prefix}workers:leases"
        self._claim: AsyncScript = redis.register_script(_CLAIM_LOST)

    def _info_key(self, worker: str) -> str:
        return f"{self.prefix}workers:info:{worker}"

    async def beat(self, info: WorkerInfo) -> None:
        """Write the card and push the lease `lease_s` ahead."""
        now = time.time()
        info.heartbeat_at = now
        info.lease_until = now + self.lease_s
        async with self.redis.pipeline(transaction=True) as p:
            p.set(self._info_key(info.id), json.dumps(info.to_dict()), ex=int(self.lease_s * 30) + 60)
            p.zadd(self.leases, {info.id: int(info.lease_until * 1000)})
            await p.execute()

    async def leave(self, worker: str) -> None:
        """A clean shutdown: out of the registry at once (its calls have ended)."""
        async with self.redis.pipeline(transaction=True) as p:
            p.zrem(self.leases, worker)
            p.delete(self._info_key(worker))
            await p.execute()

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker, by id; a worker whose lease ran out (not yet reaped) reads `lost`."""
        ids = [str(i) for i in await self.redis.zrange(self.leases, 0, -1)]  # decode_responses=True
        if not ids:
            return []
        cards = [str(c) if c is not None else None
                 for c in await self.redis.mget([self._info_key(i) for i in ids])]
        now = time.time()
        out = []
        for worker, card in zip(ids, cards):
            info = WorkerInfo.from_json(card) if card else WorkerInfo(id=worker, sip="", capacity=0)
            if info.lease_until < now:
                info.state = "lost"
            out.append(info)
        return sorted(out, key=lambda w: w.id)

    async def claim_lost(self) -> list[str]:
        """The workers whose lease has run out, removed from the lease set: each id is returned to one
        caller only, across every process."""
        now_ms = int(time.time() * 1000)
        ids = await self._claim(keys=[self.leases], args=[now_ms])
        return [str(i) for i in ids]

    async def forget(self, worker: str) -> None:
        await self.redis.delete(self._info_key(worker))


class Heartbeat:
    """A worker's side: renew the lease (and the slots' leases) every `interval_s` with a fresh card."""

    def __init__(self, registry: WorkerRegistry, card: Callable[[], WorkerInfo], *, interval_s: float = 2.0,
                 also: Callable[[], Awaitable[None]] | None = None) -> None:
        self.registry = registry
        self.card = card
        self.interval_s = interval_s
        self.also = also
        self._tasks = TaskSet("heartbeat")

    async def start(self) -> None:
        await self.beat()
        self._tasks.spawn(self._run(), name="worker-heartbeat")

    async def beat(self) -> None:
        await self.registry.beat(self.card())
        if self.also is not None:
            await self.also()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying, the lease may lapse
                log.warning("worker heartbeat failed", error=str(exc) or type(exc).__name__)

    async def stop(self, *, leave: bool = True) -> None:
        await self._tasks.cancel_all()
        if leave:
            try:
                await self.registry.leave(self.card().id)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not leave the worker registry; the lease will expire", error=str(exc))


#: What to do with a lost worker (close its calls, hand its jobs back).
OnLost = Callable[[str], Awaitable[None]]


class Reaper:
    """Every `interval_s`, claims the lost workers and runs `on_lost(worker_id)` for each (exactly once
    across the cluster)."""

    def __init__(self, registry: WorkerRegistry, on_lost: OnLost, *, interval_s: float = 2.0) -> None:
        self.registry = registry
        self.on_lost = on_lost
        self.interval_s = interval_s
        self._tasks = TaskSet("reaper")

    async def start(self) -> None:
        self._tasks.spawn(self._run(), name="worker-reaper")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def reap(self) -> list[str]:
        """One round: the workers lost since the last one, handled."""
        lost = await self.registry.claim_lost()
        for worker in lost:
            metrics.WORKERS_LOST.inc()
            log.warning("worker lost: its lease expired; closing its calls", worker=worker)
            try:
                await self.on_lost(worker)
            except Exception:
                log.exception("closing a lost worker's calls failed", worker=worker)
            await self.registry.forget(worker)
        return lost

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.reap()
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next round
                log.warning("worker reaper round failed", error=str(exc) or type(exc).__name__)


def publish_metrics(workers: list[WorkerInfo]) -> None:
    """Registry gauges: workers by state, live calls per worker."""
    states = {"running": 0, "draining": 0, "lost": 0}
    metrics.WORKER_LIVE_CALLS.clear()
    for w in workers:
        states[w.state] = states.get(w.state, 0) + 1
        metrics.WORKER_LIVE_CALLS.labels(worker=w.id).set(w.live)
    for state, n in states.items():
        metrics.WORKERS.labels(state=state).set(n)


__all__ = ["WORKER_LOST", "Heartbeat", "Reaper", "WorkerInfo", "WorkerRegistry", "publish_metrics"]
