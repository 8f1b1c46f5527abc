"""The dialer over a real store and queue, with `place_call` played by a test double that behaves like a
phone network (this is the injection point the SIP gateway fills): it answers, is busy, or never answers,
and records how many calls it was handling at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from parley.agents import AgentRegistry
from parley.calls import Call, CallsService, DialerLimits, DialOutcome, RetryPolicy
from parley.calls.models import utcnow
from parley.calls.dialer import DialRefusal
from parley.calls.queue.base import CallQueue
from parley.calls.queue.local import LocalQueue
from parley.calls.queue.redis import RedisQueue
from parley.calls.store import Store
from tests.conftest import ROOT
from tests.eventually import eventually


class Network:
    """A fake far end for `place_call`: per-number scripted outcomes, concurrency bookkeeping."""

    def __init__(self, service: CallsService, *, hold_s: tuple[float, float] = (0.0, 0.0),
                 script: dict[str, list[str]] | None = None, hold_until: dict[str, int] | None = None,
                 brief: bool = False) -> None:
        self.service = service
        self.brief = brief  # answer straight away, say nothing (fewer store writes per call)
        self.hold_s = hold_s
        self.hold_until = hold_until or {}
        self.script = script or {}
        self.dialed: Counter[str] = Counter()
        self.starts: list[tuple[float, str]] = []
        self.now = Counter[str]()
        self.peak = Counter[str]()
        self.hung_up: list[str] = []
        self.release = asyncio.Event()

    def _enter(self, keys: list[str]) -> None:
        for k in keys:
            self.now[k] += 1
            self.peak[k] = max(self.peak[k], self.now[k])

    async def _hold(self) -> None:
        # On a loaded machine the store may launch calls slower than they end; while the expected peaks
        # (`hold_until`) have not all been seen, calls stay up (at most 2 s) so the caps are really tested.
        with contextlib.suppress(AssertionError):
            await eventually(lambda: all(self.peak[k] >= v for k, v in self.hold_until.items()),
                             timeout_s=2.0, interval_s=0.01)
        await asyncio.sleep(random.uniform(*self.hold_s))  # the far end's talk time

    async def place_call(self, call: Call) -> DialOutcome:
        keys = ["all", f"agent:{call.agent}", f"trunk:{call.trunk}"]
        self._enter(keys)
        self.dialed[call.id] += 1
        self.starts.append((time.monotonic(), call.id))
        try:
            plan = self.script.get(call.to_number or "", [])
            outcome = plan[call.attempt - 1] if call.attempt <= len(plan) else "completed"
            if outcome == "hold":
                await self.service.transition(call.id, "ringing")
                await self.service.transition(call.id, "in_progress")
                await self.release.wait()
                return DialOutcome("completed", "far end hung up")
            if outcome != "completed":
                return DialOutcome(outcome, f"far end said {outcome}")
            if not self.brief:
                await self.service.transition(call.id, "ringing")
            await self.service.transition(call.id, "in_progress", sip_call_id=f"{call.id}@net")
            await self._hold()
            if not self.brief:
                await self.service.add_transcript(call.id, "agent", "Hello!")
            return DialOutcome("completed", "far end hung up")
        except asyncio.CancelledError:
            self.hung_up.append(call.id)
            raise
        finally:
            for k in keys:
                self.now[k] -= 1


async def statuses(service: CallsService, ids: list[str]) -> dict[str, str]:
    calls, _ = await service.list_calls(limit=500)  # one query, so polling does not load the store
    by_id = {c.id: c.status for c in calls}
    return {i: by_id[i] for i in ids}


async def all_final(service: CallsService, ids: list[str]) -> bool:
    final = {"completed", "failed", "busy", "no_answer", "canceled"}
    return all(s in final for s in (await statuses(service, ids)).values())


@pytest.mark.slow
async def test_caps_hold_under_200_queued_calls(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    ids = []
    for i in range(200):
        agent = "german_assistant" if i % 3 == 0 else "receptionist"
        trunk = "trunk-a" if i % 2 == 0 else "trunk-b"
        ids.append((await service.create_call(to_number=f"+1555{i:07d}", agent=agent, trunk=trunk)).id)
    net = Network(service, hold_s=(0.005, 0.03), brief=True,
                  hold_until={"all": 8, "agent:german_assistant": 3, "trunk:trunk-a": 4})
    limits = DialerLimits(max_concurrent=8, per_agent={"german_assistant": 3}, per_trunk={"trunk-a": 4},
                          calls_per_second=1000)
    await service.start_dialer(net.place_call, limits=limits, poll_s=0.05)

    async def done() -> bool:
        return (await service.store.counts_by_status()).get("completed", 0) == 200

    await eventually(done, timeout_s=120, interval_s=0.5, what="200 calls completed")

    assert set((await statuses(service, ids)).values()) == {"completed"}
    assert all(n == 1 for n in net.dialed.values()) and len(net.dialed) == 200
    assert net.peak["all"] == 8, net.peak  # reached, never exceeded
    assert net.peak["agent:german_assistant"] == 3, net.peak
    assert net.peak["trunk:trunk-a"] == 4, net.peak
    assert await service.queue.depth() == 0


async def test_retry_policy_per_request(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    net = Network(service, script={"+15550000001": ["busy", "no_answer", "completed"],
                                   "+15550000002": ["no_answer", "no_answer", "no_answer"]})
    persistent = await service.create_call(to_number="+15550000001", max_retries=2, retry_backoff_s=0.1)
    never = await service.create_call(to_number="+15550000002", max_retries=1, retry_backoff_s=0.05)
    await service.start_dialer(net.place_call, poll_s=0.05)
    await eventually(lambda: all_final(service, [persistent.id, never.id]), timeout_s=20)

    ok = await service.get(persistent.id)
    assert ok is not None and ok.call.status == "completed" and ok.call.attempt == 3
    failed = [e.data for e in ok.timeline if e.type == "attempt_failed"]
    assert [f["outcome"] for f in failed] == ["busy", "no_answer"]
    starts = [t for t, cid in net.starts if cid == persistent.id]
    assert starts[1] - starts[0] >= 0.09 and starts[2] - starts[1] >= 0.19  # 0.1 s, then doubled

    gave_up = await service.get(never.id)
    assert gave_up is not None and gave_up.call.status == "no_answer" and gave_up.call.attempt == 2
    assert gave_up.call.end_reason == "far end said no_answer"
    assert net.dialed[never.id] == 2


async def test_retry_policy_from_the_agent(tmp_path: Path, settings, make_service) -> None:  # type: ignore[no-untyped-def]
    agents_dir = tmp_path / "agents"
    agents_dir.mkdir()
    (agents_dir / "persistent.yaml").write_text(
        "name: Persistent\nretry: {max_retries: 2, backoff_s: 0.05, retry_on: [busy]}\n")
    agents = AgentRegistry.load(agents_dir, ROOT / "prompts")
    service = await make_service(agents=agents)
    net = Network(service, script={"+15550000003": ["busy", "busy", "busy"],
                                   "+15550000004": ["failed"]})
    busy = await service.create_call(to_number="+15550000003", agent="persistent")
    failing = await service.create_call(to_number="+15550000004", agent="persistent")
    await service.start_dialer(net.place_call, poll_s=0.05)
    await eventually(lambda: all_final(service, [busy.id, failing.id]), timeout_s=20)
    b = await service.get_call(busy.id)
    f = await service.get_call(failing.id)
    assert b is not None and b.status == "busy" and b.attempt == 3 and net.dialed[busy.id] == 3
    assert f is not None and f.status == "failed" and net.dialed[failing.id] == 1  # failed is not in retry_on


def test_retry_policy_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown retry key"):
        RetryPolicy.from_mapping({"retries": 3})
    with pytest.raises(ValueError, match="retry_on"):
        RetryPolicy.from_mapping({"retry_on": ["completed"]})
    assert RetryPolicy(backoff_s=2, multiplier=3, max_backoff_s=10).delay(3) == 10


async def test_calls_per_second_limit(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    ids = [(await service.create_call(to_number=f"+1555100{i:04d}")).id for i in range(8)]
    net = Network(service)
    await service.start_dialer(net.place_call, limits=DialerLimits(max_concurrent=8, calls_per_second=5),
                               poll_s=0.05)
    await eventually(lambda: all_final(service, ids), timeout_s=20)
    times = sorted(t for t, _ in net.starts)
    assert times[-1] - times[0] >= 7 * 0.2 - 0.1  # 8 starts at 5/s span at least 1.4 s
    for t in times:  # never more than 5 (+1 at the window edge) starts in any second
        assert sum(1 for u in times if t <= u < t + 1.0) <= 6


async def test_schedule_at_is_respected(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    # queued first but due later: it must not hold back the call due now (3 s: the dialer's first poll may
    # come ~0.5 s late when this runs niced beside the call tests; past `due` both would be due)
    due = utcnow() + timedelta(seconds=3)
    later = await service.create_call(to_number="+15550000010", schedule_at=due)
    now = await service.create_call(to_number="+15550000011")
    net = Network(service)
    await service.start_dialer(net.place_call, poll_s=0.05)
    await eventually(lambda: all_final(service, [later.id, now.id]), timeout_s=20)
    order = [cid for _, cid in net.starts]
    assert order == [now.id, later.id]
    dialed = await service.get_call(later.id)
    assert dialed is not None and dialed.dialed_at is not None and dialed.dialed_at >= due


async def test_cancel_queued_and_live_calls(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    net = Network(service, script={"+15550000020": ["hold"]})
    live = await service.create_call(to_number="+15550000020")
    queued = await service.create_call(to_number="+15550000021", schedule_at=utcnow() + timedelta(seconds=1))
    await service.start_dialer(net.place_call, poll_s=0.05)

    async def answered() -> bool:
        c = await service.get_call(live.id)
        return c is not None and c.status == "in_progress"

    await eventually(answered, timeout_s=20, what="the live call answered")
    await service.cancel(queued.id)
    await service.cancel(live.id)
    await eventually(lambda: live.id in net.hung_up, timeout_s=20, what="the live call hung up")
    # a call due after the canceled one: once it is dialed, the canceled one would have been dialed too
    marker = await service.create_call(to_number="+15550000022", schedule_at=utcnow() + timedelta(seconds=1.2))
    await eventually(lambda: all_final(service, [marker.id]), timeout_s=20, what="the later call dialed")
    assert queued.id not in net.dialed
    s = await statuses(service, [live.id, queued.id])
    assert s == {live.id: "canceled", queued.id: "canceled"}


async def test_restart_recovers_stranded_calls(settings, agents, make_service) -> None:  # type: ignore[no-untyped-def]
    first = await make_service()
    stranded = await first.create_call(to_number="+15550000030", max_retries=1, retry_backoff_s=0.0)
    await first.store.transition(stranded.id, "dialing", updates={"worker": "old"})  # died mid-dial
    # a call committed while the queue was unreachable: stored as queued, never enqueued
    orphan = await first.store.add_call({"direction": "outbound", "status": "queued", "agent": "receptionist",
                                         "to_number": "+15550000031"})
    await first.close()

    second = await make_service()
    net = Network(second)
    await second.start_dialer(net.place_call, poll_s=0.05)
    await eventually(lambda: all_final(second, [stranded.id, orphan.id]), timeout_s=20)
    s = await second.get(stranded.id)
    assert s is not None and s.call.status == "completed" and s.call.attempt == 2
    assert any(e.type == "attempt_failed" and "worker stopped" in e.data["reason"] for e in s.timeline)
    assert net.dialed[orphan.id] == 1


@pytest.mark.parametrize("kind", ["local", pytest.param("redis", marks=pytest.mark.redis)])
async def test_redelivered_jobs_are_dialed_once(kind: str, settings, agents, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                request: pytest.FixtureRequest) -> None:
    """Two workers share one store and queue with very short leases, so jobs waiting behind the caps are
    delivered to both; each call must still be dialed exactly once. A third consumer takes a job and
    dies without acknowledging it: the job is taken over and dialed once."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    deliveries: Counter[tuple[str, int]] = Counter()

    def make_queue(name: str, store: Store):  # type: ignore[no-untyped-def]
        if kind == "local":
            q = LocalQueue(store, consumer=name, lease_s=0.05, poll_s=0.02, reclaim_on_start=False)
        else:
            q = RedisQueue(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"),
                           consumer=name, claim_idle_s=0.05, poll_s=0.02)
        get = q.get

        async def counting_get(timeout: float):  # type: ignore[no-untyped-def]
            job = await get(timeout)
            if job is not None:
                deliveries[(job.call_id, job.attempt)] += 1
            return job

        q.get = counting_get  # type: ignore[method-assign]
        return q

    services = []
    for name in ("w1", "w2", "w-crash"):
        store = Store.from_url(db_url)
        await store.upgrade()
        services.append(await CallsService.open(settings, agents=agents, store=store,
                                                queue=make_queue(name, store), send_webhooks=False))
    w1, w2, crasher = services
    try:
        crash_call = await w1.create_call(to_number="+15550009999")
        taken = await crasher.queue.get(timeout=2)
        assert taken is not None and taken.call_id == crash_call.id
        await crasher.close()  # dies holding the job

        ids = [crash_call.id] + [(await w1.create_call(to_number=f"+1555200{i:04d}")).id for i in range(24)]
        net = Network(w1, hold_s=(0.05, 0.1))
        limits = DialerLimits(max_concurrent=3, calls_per_second=1000)
        await w1.start_dialer(net.place_call, limits=limits, poll_s=0.02, max_parked=4, worker_id="w1")
        await w2.start_dialer(net.place_call, limits=limits, poll_s=0.02, max_parked=4, worker_id="w2")
        await eventually(lambda: all_final(w1, ids), timeout_s=60, interval_s=0.1)

        assert set((await statuses(w1, ids)).values()) == {"completed"}
        assert dict(net.dialed) == {i: 1 for i in ids}
        assert deliveries[(crash_call.id, 1)] >= 2  # the crashed consumer's job was delivered again
        assert sum(deliveries.values()) > len(ids)  # redeliveries happened, yet nothing was dialed twice
    finally:
        for s in (w1, w2):
            await s.close()


@pytest.mark.parametrize("kind", ["local", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_worker_that_cannot_dial_now_hands_its_jobs_to_one_that_can(
        kind: str, settings, agents, tmp_path: Path, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    """Worker `busy` is overloaded (its transport refuses every call for this worker's own reasons). The
    jobs it takes go back to the queue at once, and worker `free` dials every call, once, long before a
    lease or an idle claim (60 s here) could have moved them. `busy` dials none."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    refused: Counter[str] = Counter()

    async def overloaded(call: Call) -> DialRefusal | None:
        refused[call.id] += 1
        return DialRefusal("this worker's event loop is overloaded", here_only=True)

    services = []
    for name in ("busy", "free"):
        store = Store.from_url(db_url)
        await store.upgrade()
        if kind == "local":
            queue: CallQueue = LocalQueue(store, consumer=name, lease_s=60, poll_s=0.05, reclaim_on_start=False)
        else:
            queue = RedisQueue(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"),
                               consumer=name, claim_idle_s=60, poll_s=0.05)
        services.append(await CallsService.open(settings, agents=agents, store=store, queue=queue,
                                                send_webhooks=False))
    busy, free = services
    try:
        ids = [(await busy.create_call(to_number=f"+1555300{i:04d}")).id for i in range(6)]
        busy_net, free_net = Network(busy, brief=True), Network(free, brief=True)
        await busy.start_dialer(busy_net.place_call, admit=overloaded, poll_s=0.05, worker_id="busy")
        await eventually(lambda: sum(refused.values()) >= 2, timeout_s=10, what="the busy worker refusing calls")
        await free.start_dialer(free_net.place_call, poll_s=0.05, worker_id="free")
        started = time.monotonic()
        await eventually(lambda: all_final(free, ids), timeout_s=30, interval_s=0.1)

        assert time.monotonic() - started < 30  # not a 60 s lease or idle claim
        assert set((await statuses(free, ids)).values()) == {"completed"}
        assert dict(free_net.dialed) == {i: 1 for i in ids}
        assert not busy_net.dialed
        assert sum(refused.values()) >= 2
    finally:
        for s in services:
            await s.close()


@pytest.mark.redis
async def test_calls_accepted_while_redis_is_down_are_dialed_later(settings, agents, redis_url, redis_prefix,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    from tests.conftest import free_port

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    down = RedisQueue(f"redis://127.0.0.1:{free_port(kind=1)}/0", prefix=redis_prefix)
    store = Store.from_url(db_url)
    api = await CallsService.open(settings, agents=agents, store=store, queue=down, send_webhooks=False)
    try:
        call = await api.create_call(to_number="+15550000040")  # accepted although the queue is down
        assert call.status == "queued"
        with pytest.raises(RedisError):
            await api.health_queue()
    finally:
        await api.close()

    store = Store.from_url(db_url)
    worker = await CallsService.open(settings, agents=agents, store=store, send_webhooks=False,
                                     queue=RedisQueue(redis_url, prefix=redis_prefix, poll_s=0.05))
    try:
        net = Network(worker)
        await worker.start_dialer(net.place_call, poll_s=0.05)
        await eventually(lambda: all_final(worker, [call.id]), timeout_s=20)
        assert net.dialed[call.id] == 1
        assert (await worker.health_queue()).startswith("redis, ")
    finally:
        await worker.close()


async def test_trunk_chosen_by_the_transport_gets_its_caps_and_rate(make_service) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    ids = [(await service.create_call(to_number=f"+1555300{i:04d}")).id for i in range(6)]  # no trunk named
    net = Network(service, hold_s=(0.1, 0.15))
    limits = DialerLimits(max_concurrent=8, per_trunk={"carrier": 2}, per_trunk_cps={"carrier": 5},
                          calls_per_second=1000)
    await service.start_dialer(net.place_call, limits=limits, poll_s=0.05,
                               trunk_of=lambda call: call.trunk or "carrier")
    await eventually(lambda: all_final(service, ids), timeout_s=20)
    assert net.peak["all"] <= 2
    times = sorted(t for t, _ in net.starts)
    assert times[-1] - times[0] >= 5 * 0.2 - 0.1
