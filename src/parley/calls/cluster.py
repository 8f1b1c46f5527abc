"""One process's share of a cluster (`REDIS_URL` set): the workers' registry, the reaper of lost
workers, and the cluster-wide call slots.

    cluster = await Cluster.open(settings, calls, worker_id)     # every process: the reaper runs
    await cluster.join(card)                                     # a worker: heartbeat + lease
    ...
    await cluster.leave()                                        # clean shutdown: out of the registry
    await cluster.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from parley.calls.slots import RedisSlots
from parley.calls.workers import Heartbeat, Reaper, WorkerInfo, WorkerRegistry, publish_metrics
from parley.logging import get_logger

if TYPE_CHECKING:
    from parley.calls.service import CallsService
    from parley.settings import Settings

log = get_logger(__name__)


class Cluster:
    """Registry, reaper and shared slots over one Redis connection pool."""

    def __init__(self, settings: Settings, calls: CallsService, worker_id: str) -> None:
        self.settings = settings
        self.calls = calls
        self.worker_id = worker_id
        self.redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True, socket_connect_timeout=3,
                                             socket_timeout=5)
        prefix = settings.redis_prefix
        self.registry = WorkerRegistry(self.redis, prefix=prefix, lease_s=settings.worker_lease_s)
        self.reaper = Reaper(self.registry, self._lost, interval_s=settings.worker_heartbeat_s)
        self.slots = RedisSlots(self.redis, worker=worker_id, prefix=prefix, lease_s=settings.worker_lease_s)
        self.heartbeat: Heartbeat | None = None

    @classmethod
    async def open(cls, settings: Settings, calls: CallsService, worker_id: str) -> Cluster:
        cluster = cls(settings, calls, worker_id)
        await cluster.reaper.start()
        return cluster

    async def _lost(self, worker: str) -> None:
        await self.calls.worker_lost(worker)

    async def join(self, card: Callable[[], WorkerInfo]) -> None:
        """Register this worker and keep its lease (and its slots' leases) alive. Calls a previous life
        under the same id left active are closed first."""
        await self.calls.worker_lost(self.worker_id)
        self.heartbeat = Heartbeat(self.registry, card, interval_s=self.settings.worker_heartbeat_s,
                                   also=self.slots.renew)
        await self.heartbeat.start()
        log.info("worker registered", worker=self.worker_id, lease_s=self.settings.worker_lease_s)

    async def announce(self) -> None:
        """Write the card now (e.g. state changed to draining), not at the next heartbeat."""
        if self.heartbeat is not None:
            try:
                await self.heartbeat.beat()
            except Exception as exc:  # noqa: BLE001
                log.warning("could not update the worker card", error=str(exc))

    async def leave(self) -> None:
        """Clean shutdown of a worker: out of the registry, untaken jobs back to the queue."""
        if self.heartbeat is None:
            return
        await self.heartbeat.stop(leave=True)
        self.heartbeat = None
        try:
            await self.calls.queue.release_consumer(self.worker_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not hand this worker's jobs back; another worker reclaims them later",
                        error=str(exc))

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker (also refreshes the registry gauges)."""
        found = await self.registry.workers()
        publish_metrics(found)
        return found

    async def close(self) -> None:
        await self.leave()
        await self.reaper.stop()
        await self.redis.aclose()


def describe_workers(workers: list[WorkerInfo]) -> str:
    """One line: `2 worker(s): w1 running sip 127.0.0.1:5071 1/4 live; …`."""
    if not workers:
        return "no worker registered"
    parts = [f"{w.id} {w.state} sip {w.sip or '-'} {w.live}/{w.capacity} live" for w in workers]
    return f"{len(workers)} worker(s): " + "; ".join(parts)


__all__ = ["Cluster", "describe_workers"]
