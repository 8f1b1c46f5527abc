"""One suite, two queues: the local queue (rows in a SQLite file) and the Redis Streams queue (real Redis).
Ordering, schedule_at, cancel, a consumer crashing mid-job, a process restart, idempotent put."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from parley.calls.models import utcnow
from parley.calls.queue.base import CallQueue
from parley.calls.queue.local import LocalQueue
from parley.calls.queue.redis import RedisQueue
from parley.calls.store import Store

QueueFactory = Callable[[str], CallQueue]


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    """`make_queue(consumer)` -> a started queue; all share one backing (database file or Redis keys)."""
    made: list[CallQueue] = []
    store: Store | None = None
    if request.param == "local":
        store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}")
        await store.upgrade()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

    async def make(consumer: str) -> CallQueue:
        q: CallQueue
        if store is not None:
            q = LocalQueue(store, consumer=consumer, lease_s=0.4, poll_s=0.05)
        else:
            q = RedisQueue(url, prefix=prefix, consumer=consumer, claim_idle_s=0.4, poll_s=0.05)
        await q.start()
        made.append(q)
        return q

    yield make  # type: ignore[misc]
    for q in made:
        await q.close()
    if store is not None:
        await store.close()


async def test_jobs_come_out_in_the_order_they_went_in(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = await make_queue("w1")
    for i in range(5):
        assert await q.put(f"call-{i}")
    assert await q.depth() == 5
    got = []
    for _ in range(5):
        job = await q.get(timeout=2)
        assert job is not None
        got.append(job.call_id)
        await q.ack(job)
    assert got == [f"call-{i}" for i in range(5)]
    assert await q.get(timeout=0.1) is None
    assert await q.depth() == 0


async def test_put_is_idempotent_per_call_and_attempt(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = await make_queue("w1")
    assert await q.put("call-a", attempt=1)
    assert not await q.put("call-a", attempt=1)
    assert await q.put("call-a", attempt=2)
    assert await q.depth() == 2


async def test_scheduled_job_waits_until_due(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = await make_queue("w1")
    t0 = time.monotonic()
    await q.put("later", due_at=utcnow() + timedelta(seconds=0.6))
    await q.put("now")
    first = await q.get(timeout=2)
    assert first is not None and first.call_id == "now"
    await q.ack(first)
    assert await q.get(timeout=0.1) is None  # not due yet
    second = await q.get(timeout=5)
    assert second is not None and second.call_id == "later"
    assert time.monotonic() - t0 >= 0.55
    await q.ack(second)


async def test_cancel_drops_waiting_and_scheduled_jobs(make_queue) -> None:  # type: ignore[no-untyped-def]
    q = await make_queue("w1")
    await q.put("a")
    await q.put("b")
    await q.put("c", due_at=utcnow() + timedelta(seconds=0.3))
    assert await q.cancel("a")
    assert await q.cancel("c")
    assert not await q.cancel("never-queued")
    job = await q.get(timeout=2)
    assert job is not None and job.call_id == "b"
    await q.ack(job)
    assert await q.get(timeout=0.8) is None  # neither a nor (now due) c comes out


async def test_a_crashed_consumers_job_is_taken_over(make_queue) -> None:  # type: ignore[no-untyped-def]
    crashed = await make_queue("w-crashed")
    await crashed.put("job-1")
    taken = await crashed.get(timeout=2)
    assert taken is not None and taken.call_id == "job-1"
    await crashed.close()  # dies without ack

    survivor = await make_queue("w-survivor")
    t0 = time.monotonic()
    again = await survivor.get(timeout=5)
    assert again is not None and again.call_id == "job-1" and again.attempt == taken.attempt
    assert time.monotonic() - t0 < 4
    await survivor.ack(again)
    assert await survivor.get(timeout=0.8) is None  # acked: delivered no more
    assert await survivor.depth() == 0


async def test_nothing_is_lost_across_a_restart(make_queue) -> None:  # type: ignore[no-untyped-def]
    first = await make_queue("run-1")
    await first.put("x")
    await first.put("y")
    await first.put("z", due_at=utcnow() + timedelta(seconds=0.3))
    in_flight = await first.get(timeout=2)
    assert in_flight is not None and in_flight.call_id == "x"
    await first.close()  # the process stops with x in flight, y waiting, z scheduled

    second = await make_queue("run-2")
    seen = []
    while len(seen) < 3:
        job = await second.get(timeout=5)
        assert job is not None, f"lost jobs; got only {seen}"
        seen.append(job.call_id)
        await second.ack(job)
    assert sorted(seen) == ["x", "y", "z"]
    assert await second.get(timeout=0.6) is None


async def test_a_released_job_is_delivered_again_at_once(make_queue) -> None:  # type: ignore[no-untyped-def]
    """A worker that cannot dial a job now hands it back: another consumer gets it straight away, not when
    the lease runs out (30 s here); handing back a job that was acked meanwhile brings nothing back."""
    w1, w2 = await make_queue("w1"), await make_queue("w2")
    for q in (w1, w2):  # leases and idle claims far longer than the test
        if isinstance(q, LocalQueue):
            q.lease_s = 30.0
        else:
            q.claim_idle_s = 30.0
    await w1.put("call-1")
    job = await w1.get(timeout=2)
    assert job is not None
    assert await w2.get(timeout=0.2) is None  # leased to w1

    await w1.release(job)
    again = await w2.get(timeout=5)
    assert again is not None and (again.call_id, again.attempt) == ("call-1", 1)
    assert await w1.depth() == 1

    await w2.ack(again)
    await w2.release(again)  # acked: nothing comes back
    assert await w1.get(timeout=0.3) is None
    assert await w1.depth() == 0
