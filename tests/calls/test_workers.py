"""The workers' registry and leases on real Redis + PostgreSQL (issue 18, defect 8; issue 15, item 3).

A worker that stops renewing its lease (as after `kill -9`) is lost: exactly one reaper closes its live
calls `failed` / `worker_lost` keeping their partial transcripts, and hands the dial job it had taken back
to the queue once, where another worker's consumer takes it.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from parley.calls.cluster import Cluster, describe_workers
from parley.calls.queue.redis import RedisQueue
from parley.calls.service import CallsService
from parley.calls.workers import WORKER_LOST, Reaper, WorkerInfo, WorkerRegistry
from tests.eventually import eventually


@pytest.fixture
async def service(settings, postgres_url: str, redis_url: str, redis_prefix: str):  # type: ignore[no-untyped-def]
    s = settings.model_copy(update={"database_url": postgres_url, "redis_url": redis_url,
                                    "redis_prefix": redis_prefix, "worker_lease_s": 0.6,
                                    "worker_heartbeat_s": 0.2, "worker_id": "alive"})
    svc = await CallsService.open(s, send_webhooks=False)
    yield svc
    await svc.close()


async def test_registry_lists_workers_and_marks_silent_ones_lost(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        registry = WorkerRegistry(client, prefix=redis_prefix, lease_s=0.4)
        await registry.beat(WorkerInfo(id="w1", sip="127.0.0.1:5071", capacity=4, live=1))
        await registry.beat(WorkerInfo(id="w2", sip="127.0.0.1:5072", capacity=4, state="draining"))
        found = await registry.workers()
        assert [(w.id, w.state, w.live) for w in found] == [("w1", "running", 1), ("w2", "draining", 0)]
        assert "w1 running sip 127.0.0.1:5071 1/4 live" in describe_workers(found)
        await asyncio.sleep(0.5)
        await registry.beat(WorkerInfo(id="w1", sip="127.0.0.1:5071", capacity=4))
        assert [(w.id, w.state) for w in await registry.workers()] == [("w1", "running"), ("w2", "lost")]
        # two reapers racing: w2 goes to one of them only
        a, b = await asyncio.gather(registry.claim_lost(), registry.claim_lost())
        assert sorted(a + b) == ["w2"]
        await registry.leave("w1")
        assert await registry.workers() == []
    finally:
        await client.aclose()


async def test_lost_worker_calls_closed_worker_lost_with_transcript_and_job_dialed_once(
        service: CallsService, redis_url: str, redis_prefix: str) -> None:
    s = service.settings
    # the dead worker: registered, running an inbound call with two utterances, holding one dial job
    live = await service.create_call(to_number="+4930123456", direction="inbound", status="in_progress",
                                     worker="dead")
    await service.add_transcript(live.id, "agent", "Hello, Parley Dental.")
    await service.add_transcript(live.id, "caller", "I would like to book")
    queued = await service.create_call(to_number="+15551234567")
    dead_queue = RedisQueue(redis_url, prefix=redis_prefix, consumer="dead", claim_idle_s=3600)
    await dead_queue.start()
    taken = await dead_queue.get(timeout=2)
    assert taken is not None and taken.call_id == queued.id
    await dead_queue.close()  # killed: never acks
    dead_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await WorkerRegistry(dead_client, prefix=redis_prefix, lease_s=0.3).beat(
        WorkerInfo(id="dead", sip="127.0.0.1:5999", capacity=4, live=1))
    await dead_client.aclose()

    # two processes run reapers; the lost worker is handled once
    cluster = await Cluster.open(s, service, "alive")
    other = aioredis.Redis.from_url(redis_url, decode_responses=True)
    second = Reaper(WorkerRegistry(other, prefix=redis_prefix), service.worker_lost, interval_s=0.1)
    await second.start()
    try:
        async def closed() -> object:
            call = await service.get_call(live.id)
            return call if call is not None and call.status == "failed" else None

        call = await eventually(closed, timeout_s=10, what="the lost worker's call closed")
        assert call.end_reason == WORKER_LOST  # type: ignore[attr-defined]
        detail = await service.get(live.id)
        assert detail is not None
        assert [t.text for t in detail.transcript] == ["Hello, Parley Dental.", "I would like to book"]
        assert [w.id for w in await cluster.workers()] == []

        # the job it had taken is back, once: another worker's consumer gets it, then nothing more
        alive_queue = service.queue
        assert isinstance(alive_queue, RedisQueue)
        job = await alive_queue.get(timeout=3)
        assert job is not None and job.call_id == queued.id
        await alive_queue.ack(job)
        assert await alive_queue.get(timeout=0.5) is None
        assert (await service.get_call(queued.id)).status == "queued"  # type: ignore[union-attr]
    finally:
        await second.stop()
        await other.aclose()
        await cluster.close()


async def test_restarted_worker_with_the_same_id_closes_its_previous_calls(service: CallsService) -> None:
    left = await service.create_call(to_number="+4930123456", direction="inbound", status="in_progress",
                                     worker="alive")
    cluster = await Cluster.open(service.settings, service, "alive")
    try:
        await cluster.join(lambda: WorkerInfo(id="alive", sip="127.0.0.1:5060", capacity=4))
        call = await service.get_call(left.id)
        assert call is not None and call.status == "failed" and call.end_reason == WORKER_LOST
        assert [w.id for w in await cluster.workers()] == ["alive"]
    finally:
        await cluster.close()
