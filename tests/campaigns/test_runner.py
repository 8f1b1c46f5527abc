"""The campaign runner over a real store, queue and dialer; `place_call` is played by `Phones`, a far-end
double like the dialer tests' (the injection point the SIP gateway fills; the SIPp tests use the real one).
Time for windows, rates and backoffs is a fake clock the test moves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from parley.campaigns.config import CampaignConfig
from parley.campaigns.runner import CampaignRunner
from parley.campaigns.store import CampaignStore
from parley.calls.states import TERMINAL
from tests.campaigns.conftest import Phones as Network
from tests.campaigns.conftest import write_csv
from tests.eventually import eventually


async def _campaign(service, tmp_path: Path, rows: list[str], **config):  # type: ignore[no-untyped-def]
    store = CampaignStore(service.store)
    campaign = await store.create("test", "receptionist", CampaignConfig(**config))
    csv = write_csv(tmp_path / "rows.csv", "number,name", rows)
    with csv.open(encoding="utf-8") as f:
        report = await store.import_csv(campaign.id, f)
    await store.command(campaign.id, "start")
    return store, campaign, report


async def _settled(store: CampaignStore, campaign_id: str, runner: CampaignRunner, n: int) -> dict[str, int]:
    async def done() -> dict[str, int] | None:
        await runner.tick()
        c = await store.get(campaign_id)
        return c.outcomes if c.counts.get("done", 0) >= n else None

    return await eventually(done, timeout_s=30, interval_s=0.05, what=f"{n} recipients done")


async def test_window_cap_rate_retry_and_dnc(make_service, clock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    rows = [f"+4930{i:07d},R{i}" for i in range(6)] + ["+14155550199,Late", "+4930999,Blocked"]
    store, campaign, report = await _campaign(
        service, tmp_path, rows, window="09:00-17:00", days="mon-fri", max_concurrent=2, calls_per_minute=3,
        retry={"busy": {"max_attempts": 2, "backoff_s": 120}})
    assert report.accepted == 8 and report.bad == 0
    await store.add_dnc(["+4930999"], "asked not to be called")
    net = Network(service, script={"+49300000001": ["busy", "completed"]})
    await service.start_dialer(net.place_call, poll_s=0.02)
    runner = CampaignRunner(service, clock=clock)

    clock.now = clock.now.replace(hour=7, minute=30)  # 08:30 in Berlin: before the window
    await runner.tick()
    assert not net.dialed and (await store.get(campaign.id)).counts.get("calling", 0) == 0
    rec = await store.recipients(campaign.id)
    assert rec[0]["next_at"] == "2026-12-07T08:00:00+00:00" and "outside 09:00-17:00" in rec[0]["note"]

    clock.now = clock.now.replace(hour=8, minute=0)  # 09:00 Berlin: open; New York still asleep
    await runner.tick()
    c = await store.get(campaign.id)
    assert c.counts["calling"] == 2  # the cap
    # the rate: 3 per minute, whatever the cap frees
    await eventually(lambda: sum(net.dialed.values()) == 2, timeout_s=10)
    for _ in range(3):
        await eventually(lambda: _no_live(service), timeout_s=10)
        await runner.tick()
    assert len((await store.attempts(campaign.id))) == 3  # rate reached within the same (fake) minute
    clock.advance(minutes=1)
    await runner.tick()
    await eventually(lambda: _no_live(service), timeout_s=10)
    clock.advance(minutes=1)
    for _ in range(4):
        await runner.tick()
        await eventually(lambda: _no_live(service), timeout_s=10)
    clock.advance(minutes=3)  # past the busy backoff (120 s)
    outcomes = await _settled(store, campaign.id, runner, 7)
    assert outcomes == {"completed": 6, "dnc": 1}, outcomes
    recips = {r["number"]: r for r in await store.recipients(campaign.id)}
    assert recips["+49300000001"]["attempts"] == 2  # busy, then answered
    assert recips["+4930999"]["outcome"] == "dnc" and recips["+4930999"]["attempts"] == 0
    assert recips["+14155550199"]["state"] == "pending"  # 09:00 in San Francisco is 17:00 UTC
    assert "+4930999" not in {c.to_number for c in (await service.list_calls(limit=100))[0]}
    clock.now = clock.now.replace(hour=17, minute=0)
    outcomes = await _settled(store, campaign.id, runner, 8)
    assert outcomes == {"completed": 7, "dnc": 1}
    assert net.peak_per_number == 1 and net.dialed["+49300000001"] == 2 and sum(net.dialed.values()) == 8
    assert (await store.get(campaign.id)).state == "completed"
    calls, _ = await service.list_calls(campaign=campaign.id, limit=100)
    assert len(calls) == 8 and {c.metadata["campaign_id"] for c in calls} == {campaign.id}


async def _no_live(service) -> bool:  # type: ignore[no-untyped-def]
    calls, _ = await service.list_calls(limit=100)
    return all(c.status in TERMINAL for c in calls)


async def test_restart_between_claim_and_call_does_not_dial_twice(make_service, clock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    store, campaign, _ = await _campaign(service, tmp_path, ["+4930111,A", "+4930222,B"])
    due = await store.due(campaign.id, clock(), 10)
    assert await store.claim(campaign.id, due[0], "00000000-0000-4000-8000-000000000001", clock())
    assert not await store.claim(campaign.id, due[0], "00000000-0000-4000-8000-000000000002", clock())
    # the process stopped here: the row is claimed, its call never created
    net = Network(service)
    await service.start_dialer(net.place_call, poll_s=0.02)
    runner = CampaignRunner(service, clock=clock)
    outcomes = await _settled(store, campaign.id, runner, 2)
    assert outcomes == {"completed": 2}
    late = await service.get_call("00000000-0000-4000-8000-000000000001")  # the claimed id, created late
    assert late is not None and late.to_number == "+4930111" and late.status == "completed"
    assert sorted(net.dialed.values()) == [1, 1]


async def test_pause_resume_cancel(make_service, clock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    store, campaign, _ = await _campaign(service, tmp_path, [f"+4930{i:07d},R{i}" for i in range(5)],
                                         max_concurrent=1)
    net = Network(service, script={"+49300000000": ["hold"]})
    await service.start_dialer(net.place_call, poll_s=0.02)
    runner = CampaignRunner(service, clock=clock)
    await runner.tick()
    await store.command(campaign.id, "pause")
    net.release.set()
    await eventually(lambda: _no_live(service), timeout_s=10)
    await runner.tick()
    await runner.tick()
    c = await store.get(campaign.id)
    assert c.state == "paused" and c.outcomes == {"completed": 1} and c.counts["pending"] == 4
    with pytest.raises(ValueError, match="pause needs it running"):
        await store.command(campaign.id, "pause")
    await store.command(campaign.id, "resume")
    await runner.tick()
    await store.command(campaign.id, "cancel")
    await eventually(lambda: _no_live(service), timeout_s=10)
    await runner.tick()
    c = await store.get(campaign.id)
    assert c.state == "canceled" and c.finished_at is not None
    assert c.outcomes.get("canceled", 0) >= 3 and sum(c.outcomes.values()) == 5


async def test_100k_row_csv_accepted_in_seconds(make_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = await make_service()
    store = CampaignStore(service.store)
    campaign = await store.create("big", "receptionist", CampaignConfig())
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("number,name,amount\n")
        for i in range(100_000):
            f.write(f"+4930{i:08d},Name {i},{i % 97}\n" if i % 10_000 != 5 else "oops,Bad,0\n")
    t0 = time.perf_counter()
    with path.open(encoding="utf-8") as f:
        report = await store.import_csv(campaign.id, f)
    took = time.perf_counter() - t0
    assert report.accepted == 99_990 and report.bad == 10
    assert [e.line for e in report.errors] == [7 + 10_000 * k for k in range(10)]
    assert took < 90, took  # generous: ~5 s on a quiet 2-core machine, 40 s seen at load 10 (bench/campaigns)
    c = await store.get(campaign.id)
    assert c.rows_total == 99_990 and c.counts["pending"] == 99_990


async def test_two_workers_share_a_campaign_through_redis_without_double_dialing(  # type: ignore[no-untyped-def]
        settings, agents, redis_url, redis_prefix, clock, tmp_path: Path) -> None:
    """Scale-out: two worker processes' worth of service + dialer + runner on one database and one Redis
    queue. The campaign lease gives one runner the campaign; calls are dialed by both dialers; every row
    gets exactly one call; the cap holds across workers."""
    from parley.calls.queue.redis import RedisQueue
    from parley.calls.service import CallsService
    from parley.calls.store import Store
    from tests.campaigns.conftest import Phones

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    workers = []
    try:
        for name in ("w1", "w2"):
            service = await CallsService.open(settings, agents=agents, store=Store.from_url(db_url),
                                              send_webhooks=False,
                                              queue=RedisQueue(redis_url, prefix=redis_prefix, consumer=name,
                                                               poll_s=0.02))
            phones = Phones(service)
            await service.start_dialer(phones.place_call, poll_s=0.02, worker_id=name)
            workers.append((service, phones, CampaignRunner(service, clock=clock, owner=name)))
        store, campaign, _ = await _campaign(workers[0][0], tmp_path, [f"+4930{i:07d},R{i}" for i in range(30)],
                                             max_concurrent=3)
        lease_holders = set()

        async def done() -> bool:
            for _, _, runner in workers:
                if await runner.tick():
                    lease_holders.add(runner.owner)
            return (await store.get(campaign.id)).state == "completed"

        await eventually(done, timeout_s=60, interval_s=0.02, what="the campaign completed by two workers")
        c = await store.get(campaign.id)
        assert c.outcomes == {"completed": 30}
        assert lease_holders == {"w1"}  # the first runner holds the lease; the second never ran it
        dialed = workers[0][1].dialed + workers[1][1].dialed
        assert len(dialed) == 30 and set(dialed.values()) == {1}
        assert max(workers[0][1].peak, workers[1][1].peak) <= 3
    finally:
        for service, _, runner in workers:
            await runner.stop()
            await service.close()
