"""The campaign runner: turns due recipients into queued calls for the dialer, and records how each call
ended (the recipient's outcome, or a retry), every `tick_s`.

Per campaign and tick, in this order:

1. settle: each recipient in `calling` whose call has ended gets its outcome (`policy.outcome_of`) and
   the retry decision (`policy.after_attempt`); a claimed recipient whose call was never created (the
   process stopped in between) gets it created now, with the same call id, so it is never dialed twice;
2. while the campaign is `running`: `policy.free_slots` (concurrency cap, calls per minute) says how many
   may start; due recipients are checked against the calling window in their local time
   (`windows.next_allowed`: outside it, they are deferred to its next opening) and the do-not-call list
   (at dial time: a listed number ends `dnc`); each is claimed (compare-and-set) and its call queued;
3. a campaign with nothing pending or in flight is `completed`.

`clock` gives "now" for windows, rates and backoffs (a fake clock in tests). A lease on the campaign row
keeps a second runner (another process) off the same campaign.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from parley.calls.models import utcnow
from parley.calls.service import CallRequestError, CallsService
from parley.calls.states import TERMINAL
from parley.campaigns.config import CampaignConfig
from parley.campaigns.numbers import zone_for
from parley.campaigns.policy import Done, after_attempt, free_slots, outcome_of
from parley.campaigns.store import CampaignStore, Due
from parley.campaigns.windows import next_allowed
from parley.logging import get_logger
from parley.support.taskset import TaskSet

log = get_logger(__name__)

Clock = Callable[[], datetime]


class CampaignRunner:
    """Runs every active campaign of the calls database through `calls` (whose dialer places the calls)."""

    def __init__(self, calls: CallsService, *, clock: Clock = utcnow, tick_s: float = 1.0,
                 lease_s: float = 30.0, owner: str | None = None) -> None:
        self.calls = calls
        self.store = CampaignStore(calls.store)
        self.clock = clock
        self.tick_s = tick_s
        self.lease_s = lease_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._tasks = TaskSet("campaigns")
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._tasks.spawn(self._loop(), name="parley-campaigns")
        log.info("campaign runner started", owner=self.owner)

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        try:
            await self.store.release(self.owner)
        except Exception:
            log.exception("could not release campaign leases")

    def wake(self) -> None:
        """Run a tick now (a campaign was started or resumed)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            busy = 0
            try:
                busy = await self.tick()
            except Exception:
                log.exception("campaign tick failed; continuing")
            self._wake.clear()
            try:
                # calls were started or settled: look again soon (calls end between ticks)
                await asyncio.wait_for(self._wake.wait(), min(self.tick_s, 0.1) if busy else self.tick_s)
            except TimeoutError:
                pass

    async def tick(self) -> int:
        """One pass over every active campaign; returns how many calls it started or settled."""
        done = 0
        async with self._lock:
            for campaign_id in await self.store.active_ids():
                if await self.store.lease(campaign_id, self.owner, self.lease_s):
                    done += await self.step(campaign_id)
        return done

    async def step(self, campaign_id: str) -> int:
        row = await self.store.row(campaign_id)
        config = CampaignConfig.model_validate(row.config or {})
        now = self.clock()
        in_flight, settled = await self._settle(campaign_id, row.agent, row.state, config, now)
        started = 0
        if row.state == "canceled":
            if in_flight == 0:
                await self.store.finish_campaign(campaign_id, "canceled")
            return settled
        if row.state == "running":
            started = await self._start_calls(campaign_id, row.agent, config, now, in_flight)
            if not await self.store.has_pending(campaign_id):
                await self.store.finish_campaign(campaign_id, "completed")
                log.info("campaign completed", campaign_id=campaign_id)
        return started + settled

    async def _settle(self, campaign_id: str, agent: str, state: str, config: CampaignConfig,
                      now: datetime) -> tuple[int, int]:
        """Record ended calls; returns how many calls are still queued or live, and how many ended."""
        policy = config.retry_policy()
        in_flight = settled = 0
        calling = await self.store.calling(campaign_id)
        states = await self.store.call_states([r.call_id for r in calling if r.call_id])
        for r in calling:
            assert r.call_id is not None
            known = states.get(r.call_id)
            if known is None:
                if state == "canceled":
                    await self.store.finish(r.id, "canceled", "campaign canceled", call_id=r.call_id, now=now)
                    continue
                log.warning("claimed recipient had no call (stopped in between); queuing it now",
                            campaign_id=campaign_id, line=r.line)
                if await self._create_call(campaign_id, agent, config, r, r.call_id, now):
                    in_flight += 1
                continue
            status, metadata = known
            if status not in TERMINAL:
                if state == "canceled":
                    try:
                        await self.calls.cancel(r.call_id, "campaign canceled")
                    except Exception:
                        log.info("call of a canceled campaign could not be canceled", call_id=r.call_id)
                in_flight += 1
                continue
            outcome = outcome_of(status, metadata)
            decision = after_attempt(outcome, r.attempts, policy)
            if state == "canceled" and not isinstance(decision, Done):
                decision = Done(outcome, f"{outcome}; no retry: campaign canceled")
            if isinstance(decision, Done):
                await self.store.finish(r.id, decision.outcome, decision.why, call_id=r.call_id, now=now)
            else:
                await self.store.retry(r.id, r.call_id, outcome, now + timedelta(seconds=decision.delay_s),
                                       decision.why, now)
            settled += 1
        return in_flight, settled

    async def _start_calls(self, campaign_id: str, agent: str, config: CampaignConfig, now: datetime,
                           in_flight: int) -> int:
        started = await self.store.started_since(campaign_id, now - timedelta(minutes=1))
        slots = free_slots(max_concurrent=config.max_concurrent, in_flight=in_flight,
                           calls_per_minute=config.calls_per_minute, started_last_minute=started)
        if slots.n == 0:
            return 0
        window = config.schedule()
        begun = 0
        later: list[tuple[int, datetime, str]] = []
        # look at more rows than slots: some are outside their window or on the DNC list
        for r in await self.store.due(campaign_id, now, limit=max(200, slots.n * 4)):
            if begun >= slots.n:
                break
            zone = r.zone or zone_for(r.number) or config.timezone
            decision = next_allowed(window, now, zone)
            if decision.at is None:
                await self.store.finish(r.id, "expired", decision.why)
                continue
            if decision.at > now:
                later.append((r.id, decision.at, decision.why))
                continue
            if await self.store.is_dnc(r.number):
                await self.store.finish(r.id, "dnc", f"{r.number} is on the do-not-call list at dial time")
                log.info("recipient on the do-not-call list; not dialed", campaign_id=campaign_id, line=r.line)
                continue
            call_id = str(uuid.uuid4())
            if not await self.store.claim(campaign_id, r, call_id, now):
                continue
            claimed = Due(r.id, r.line, r.number, r.zone, r.variables, r.metadata, r.attempts + 1, call_id)
            if await self._create_call(campaign_id, agent, config, claimed, call_id, now):
                begun += 1
        await self.store.defer(later)
        return begun + len(later)  # deferring rows is work too: the loop comes back soon for the rest

    async def _create_call(self, campaign_id: str, agent: str, config: CampaignConfig, r: Due, call_id: str,
                           now: datetime) -> bool:
        try:
            await self.calls.create_call(
                call_id=call_id, to_number=r.number, agent=agent, variables=r.variables,
                metadata={**r.metadata, "campaign_id": campaign_id, "campaign_line": r.line,
                          "campaign_attempt": r.attempts},
                max_retries=0, from_number=config.from_number, trunk=config.trunk, webhook_url=config.webhook_url)
        except CallRequestError as exc:
            await self.store.finish(r.id, "invalid", str(exc), call_id=call_id, now=now)
            return False
        return True
