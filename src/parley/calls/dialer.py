"""The dialer: takes due jobs from the queue and places calls through an injected `place_call`, within
exact concurrency caps (global, per trunk, per agent) and a calls-per-second limit, and records how each
attempt ended (a retry, or the final status) as `outcomes.settle` decides.

`place_call(call)` is provided by the transport (the SIP gateway). It is awaited for the whole life of the
call and returns a `DialOutcome`. While it runs it reports progress only (`transition(id, "ringing")`,
`transition(id, "in_progress")`, transcript entries …); the final status is the dialer's to write. If it
returns `completed` without having reported the answer, the answer is recorded at that moment. Cancelling
the task (a `POST /api/calls/{id}/cancel`) must hang the call up.

The dialer works on the store and the queue it is given; the `CallsService` that starts it passes
`agent_spec` (an agent's settings: per-agent caps and retry blocks) and `on_ended` (the end-of-call work:
the conversation file).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from parley.calls import metrics
from parley.calls.models import utcnow
from parley.calls.outcomes import DialOutcome, Finish, Leave, RetryPolicy, settle
from parley.calls.queue.base import CallQueue, Job
from parley.calls.records import Call
from parley.calls.states import ACTIVE, CallStatus, IllegalTransition
from parley.calls.store import Store
from parley.logging import bind_call, get_logger
from parley.support.taskset import TaskSet

if TYPE_CHECKING:
    from parley.agents.spec import AgentSpec

log = get_logger(__name__)

#: Worker ids of the dialers running in this process: their live calls are not leftovers to recover.
_RUNNING: set[str] = set()


class PlaceCall(Protocol):
    """The transport's dialing function: dial `call`, run it to its end, say how it ended."""

    def __call__(self, call: Call, /) -> Awaitable[DialOutcome]: ...


#: End-of-call work after the dialer recorded a final status (the service writes the conversation file).
OnEnded = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True)
class DialRefusal:
    """Why the transport will not dial a call now. `here_only`: the reason is this worker's own state
    (overloaded, draining, its conversation slots full), so another worker may dial the call at once and the
    job goes back to the queue; otherwise a limit holds for every worker and the job waits here for a slot."""

    reason: str
    here_only: bool = False


#: Asked before a call is dialed: reserve its slots (cluster-wide caps and rate); None = go, else why not.
Admit = Callable[[Call], Awaitable[DialRefusal | None]]

#: Frees what `Admit` reserved (idempotent).
ReleaseSlot = Callable[[Call], Awaitable[None]]

#: An agent's settings by name, None when there is no such agent.
AgentSpecs = Callable[[str], "AgentSpec | None"]


async def _nothing(_call: Call) -> None:
    return None


def _no_agents(_name: str) -> AgentSpec | None:
    return None


@dataclass
class DialerLimits:
    """Concurrency caps and the dialing rate. `per_agent` caps come from agents' `max_concurrent_calls`
    unless given here; `per_trunk` / `per_trunk_cps` from the trunks' outbound `max_concurrent_calls` /
    `max_calls_per_second` (the gateway passes them)."""

    max_concurrent: int = 4
    per_trunk: dict[str, int] = field(default_factory=dict)
    per_agent: dict[str, int] = field(default_factory=dict)
    calls_per_second: float = 10.0
    per_trunk_cps: dict[str, float] = field(default_factory=dict)


class Pacer:
    """At most `rate` call starts per second, evenly spaced."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            start = max(now, self._next)
            self._next = start + self.interval
            if start > now:
                await asyncio.sleep(start - now)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Dialer:
    """Pulls jobs from `queue` and runs `place_call` for each, within the limits; records every outcome."""

    def __init__(
        self,
        store: Store,
        queue: CallQueue,
        place_call: PlaceCall,
        *,
        limits: DialerLimits | None = None,
        retry: RetryPolicy | None = None,
        agent_spec: AgentSpecs = _no_agents,
        on_ended: OnEnded = _nothing,
        worker_id: str | None = None,
        poll_s: float = 0.5,
        cancel_check_s: float = 1.0,
        sweep_s: float = 30.0,
        max_parked: int | None = None,
        trunk_of: Callable[[Call], str | None] | None = None,
        admit: Admit | None = None,
        release_slot: ReleaseSlot | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.place_call = place_call
        self.limits = limits or DialerLimits()
        self.retry = retry or RetryPolicy()
        self.agent_spec = agent_spec
        self.on_ended = on_ended
        self.worker_id = worker_id or default_worker_id()
        self.poll_s = poll_s
        self.cancel_check_s = cancel_check_s
        self.sweep_s = sweep_s
        self.max_parked = max_parked if max_parked is not None else max(8, self.limits.max_concurrent)
        self.pacer = Pacer(self.limits.calls_per_second)
        self.trunk_pacers = {t: Pacer(r) for t, r in self.limits.per_trunk_cps.items()}
        #: The trunk a call will use (caps are counted per trunk): `call.trunk` unless the transport
        #: chooses (e.g. its default outbound trunk for calls that name none).
        self.trunk_of: Callable[[Call], str | None] = trunk_of or (lambda call: call.trunk)
        self._trunk_by_call: dict[str, str | None] = {}
        #: The transport's slot reservation (the gateway's `admit_outbound` / `release_outbound`): caps
        #: shared with inbound calls and other workers. A refusal parks the job until a slot frees.
        self.admit = admit
        self.release_slot = release_slot
        self.active: dict[str, asyncio.Task[None]] = {}
        self._by_trunk: dict[str, int] = {}
        self._by_agent: dict[str, int] = {}
        self._parked: deque[tuple[Job, Call]] = deque()
        self._canceling: set[str] = set()
        self._changed = asyncio.Condition()
        self._loops = TaskSet("dialer")
        self._calls = TaskSet("dialer-calls")
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what a previous run left, then start taking jobs."""
        await self.recover()
        _RUNNING.add(self.worker_id)
        self._loops.spawn(self._loop(), name="parley-dialer")
        self._loops.spawn(self._watch_cancels(), name="parley-dialer-cancels")
        log.info("dialer started", worker=self.worker_id, max_concurrent=self.limits.max_concurrent,
                 calls_per_second=self.limits.calls_per_second)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop taking jobs; give live calls `grace_s` to end, then hang them up (recorded as failed).
        Stopping twice is harmless."""
        self._stopping = True
        _RUNNING.discard(self.worker_id)
        await self._loops.cancel_all()
        live = list(self.active.values())
        if live and grace_s > 0:
            await asyncio.wait(live, timeout=grace_s)
        await self._calls.cancel_all()

    async def recover(self) -> None:
        """Fail outbound calls a dead run of this worker left active (retry policy applies), and make
        sure every queued call has a job (a job lost between commit and enqueue is queued again)."""
        local = self.queue.kind == "local"
        worker = None if local else self.worker_id
        for call in await self.store.calls_in({s.value for s in ACTIVE}, worker=worker):
            if call.direction != "outbound":
                continue
            if local and call.worker in _RUNNING:
                continue  # a live call of another dialer in this process, not a leftover of a dead run
            log.warning("call was active when its worker stopped", call_id=call.id, status=call.status)
            await self._settle(call, DialOutcome("failed", "worker stopped during the call"))
        await self.sweep()

    async def sweep(self) -> int:
        """Give every queued outbound call a job (idempotent); returns how many were missing."""
        added = 0
        for call in await self.store.calls_in({CallStatus.QUEUED.value}):
            if call.direction == "outbound":
                added += await self.queue.put(call.id, attempt=call.attempt, due_at=call.schedule_at)
        return added

    # --- limits -------------------------------------------------------------------------------

    def agent_cap(self, agent: str) -> int | None:
        if agent in self.limits.per_agent:
            return self.limits.per_agent[agent]
        spec = self.agent_spec(agent)
        return spec.max_concurrent_calls if spec else None

    def _fits(self, call: Call) -> bool:
        if len(self.active) >= self.limits.max_concurrent:
            return False
        cap = self.agent_cap(call.agent)
        if cap is not None and self._by_agent.get(call.agent, 0) >= cap:
            return False
        trunk = self.trunk_of(call)
        trunk_cap = self.limits.per_trunk.get(trunk) if trunk else None
        return trunk_cap is None or self._by_trunk.get(trunk or "", 0) < trunk_cap

    def _reserve(self, call: Call, task: asyncio.Task[None]) -> None:
        self.active[call.id] = task
        self._by_agent[call.agent] = self._by_agent.get(call.agent, 0) + 1
        trunk = self._trunk_by_call[call.id] = self.trunk_of(call)
        if trunk:
            self._by_trunk[trunk] = self._by_trunk.get(trunk, 0) + 1
        metrics.DIALER_ACTIVE.set(len(self.active))

    async def _release(self, call: Call) -> None:
        if self.release_slot is not None:
            try:
                await self.release_slot(call)
            except Exception:
                log.exception("releasing the call's slot failed", call_id=call.id)
        self.active.pop(call.id, None)
        self._by_agent[call.agent] -= 1
        trunk = self._trunk_by_call.pop(call.id, None)
        if trunk:
            self._by_trunk[trunk] -= 1
        metrics.DIALER_ACTIVE.set(len(self.active))
        async with self._changed:
            self._changed.notify_all()

    # --- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except Exception:
                log.exception("dialer step failed; continuing")
                await asyncio.sleep(self.poll_s)

    async def _step(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.active) < self.limits.max_concurrent)
        picked = next(((j, c) for j, c in self._parked if self._fits(c)), None)
        if picked is not None:
            self._parked.remove(picked)
            await self._launch(*picked)
            return
        if len(self._parked) >= self.max_parked:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), self.poll_s)
                except TimeoutError:
                    pass
            return
        job = await self.queue.get(timeout=self.poll_s)
        if job is None:
            return
        call = await self.store.get_call(job.call_id)
        if call is None or call.status != CallStatus.QUEUED or call.attempt != job.attempt:
            # a duplicate delivery, a canceled call, or a stale attempt: nothing to dial
            await self.queue.ack(job)
            return
        if not self._fits(call):
            self._parked.append((job, call))
            return
        await self._launch(job, call)

    async def _launch(self, job: Job, call: Call) -> None:
        await self.pacer.wait()
        trunk = self.trunk_of(call)
        if trunk in self.trunk_pacers:
            await self.trunk_pacers[trunk].wait()
        if self.admit is not None:
            refusal = await self.admit(call)
            if refusal is not None:
                if refusal.here_only:
                    await self._hand_back(job, call, refusal.reason)
                else:
                    log.debug("no slot for the call yet; job kept", call_id=call.id, why=refusal.reason)
                    self._parked.append((job, call))
                await asyncio.sleep(self.poll_s)
                return
        try:
            call = await self.store.transition(
                call.id, CallStatus.DIALING, expect_attempt=job.attempt, updates={"worker": self.worker_id},
                data={"attempt": job.attempt, "worker": self.worker_id})
        except (IllegalTransition, KeyError):
            if self.release_slot is not None:
                await self.release_slot(call)
            await self.queue.ack(job)  # someone else dialed it, or it was canceled
            return
        await self.queue.ack(job)
        task = self._calls.spawn(self._run(call), name=f"dial-{call.id}")
        self._reserve(call, task)

    async def _hand_back(self, job: Job, call: Call, reason: str) -> None:
        """Give a job this worker cannot dial now back to the queue, for any worker with room (this one
        too, later). If that fails the job is parked here instead: it is never dropped."""
        try:
            await self.queue.release(job)
        except Exception as exc:  # noqa: BLE001 - the queue is down: keep the job here
            log.warning("could not hand the dial job back; kept here", call_id=job.call_id,
                        error=str(exc) or type(exc).__name__)
            self._parked.append((job, call))
            return
        metrics.DIALER_HANDED_BACK.inc()
        log.debug("dial job handed back to the queue for another worker", call_id=job.call_id, why=reason)

    async def _run(self, call: Call) -> None:
        with bind_call(call.id):
            try:
                outcome = await self.place_call(call)
            except asyncio.CancelledError:
                if call.id not in self._canceling:
                    await asyncio.shield(self._settle_safely(call, DialOutcome("failed", "worker stopped"),
                                                             retry=False))
                    await self._release(call)
                    raise
                outcome = DialOutcome("canceled", "canceled by request")
            except Exception as exc:
                log.exception("place_call failed")
                outcome = DialOutcome("failed", f"dial error: {type(exc).__name__}: {exc}")
            self._canceling.discard(call.id)
            try:
                await self._settle_safely(call, outcome)
            finally:
                await self._release(call)

    # --- recording the outcome ------------------------------------------------------------------

    async def _settle_safely(self, call: Call, outcome: DialOutcome, *, retry: bool = True) -> None:
        try:
            await self._settle(call, outcome, retry=retry)
        except Exception:
            log.exception("recording the dial outcome failed", outcome=outcome.status)

    async def _settle(self, call: Call, outcome: DialOutcome, *, retry: bool = True) -> None:
        """Record how an attempt ended, as `outcomes.settle` decides: a retry, the final status, or nothing."""
        metrics.DIAL_OUTCOMES.labels(outcome=outcome.status).inc()
        current = await self.store.get_call(call.id)
        if current is None:
            return
        if outcome.sip_call_id and not current.sip_call_id:
            current = await self.store.update_call(call.id, sip_call_id=outcome.sip_call_id)
        decision = settle(current, outcome, self.policy_for(current) if retry else None)
        if isinstance(decision, Leave):
            return
        if isinstance(decision, Finish):
            if decision.answer_first:
                await self.store.transition(call.id, CallStatus.IN_PROGRESS, reason="answer reported at the end")
            ended = await self.store.transition(call.id, decision.status, reason=decision.reason)
            await self.on_ended(ended)
            return
        due = utcnow() + timedelta(seconds=decision.delay_s)
        updated = await self.store.requeue(call.id, outcome=outcome.status,
                                           reason=outcome.reason or outcome.status, due_at=due)
        await self.queue.put(call.id, attempt=updated.attempt, due_at=due)
        log.info("dial attempt failed; retry scheduled", outcome=outcome.status, attempt=current.attempt,
                 retry_at=due.isoformat(), why=decision.why)

    def policy_for(self, call: Call) -> RetryPolicy:
        """Per-request values over the agent's `retry:` block over the dialer default."""
        policy = self.retry
        spec = self.agent_spec(call.agent)
        if spec is not None and spec.retry:
            try:
                policy = RetryPolicy.from_mapping(spec.retry, policy)
            except ValueError as exc:
                log.warning("agent retry policy ignored", agent=call.agent, error=str(exc))
        return policy.over(call)

    # --- cancellation ---------------------------------------------------------------------------

    def cancel_live(self, call_id: str) -> None:
        """Hang up `call_id` if this dialer is running it (a cancel by request; recorded as canceled)."""
        task = self.active.get(call_id)
        if task is not None and not task.done():
            self._canceling.add(call_id)
            task.cancel()

    async def _watch_cancels(self) -> None:
        """Calls canceled by another process (an API replica) are hung up here too; every `sweep_s`
        queued calls whose job never reached the queue (it was down) are queued again."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_s
        while True:
            await asyncio.sleep(self.cancel_check_s)
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + self.sweep_s
                try:
                    if await self.sweep():
                        log.warning("queued calls without a queue job were queued again")
                except Exception:
                    log.exception("queue sweep failed")
            for call_id in list(self.active):
                try:
                    call = await self.store.get_call(call_id)
                except Exception:
                    log.exception("cancel check failed")
                    break
                if call is not None and call.status == CallStatus.CANCELED:
                    self.cancel_live(call_id)
