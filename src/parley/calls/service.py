"""`CallsService`: the one object the API, the CLI and the SIP gateway use for calls.

    service = await CallsService.open(settings, agents=registry)        # migrates, starts webhooks
    call = await service.create_call(to_number="+15551234567", agent="receptionist")
    dialer = await service.start_dialer(gateway.place_call)              # outbound: worker / `parley up`
    await service.transition(call.id, "ringing"); await service.transition(call.id, "in_progress")
    await service.add_transcript(call.id, "agent", "Hello!")
    await service.end(call.id, DialOutcome("completed", "caller hung up"))   # inbound; the dialer ends outbound
    await service.close()
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parley.calls import db, export, metrics
from parley.calls.dialer import Dialer, DialerLimits, PlaceCall
from parley.calls.outcomes import DialOutcome, Finish, RetryPolicy, settle
from parley.calls.queue import CallQueue, make_queue
from parley.calls.records import Call, CallDetail, TranscriptEntry
from parley.calls.states import ACTIVE, TERMINAL, CallStatus, IllegalTransition, parse_status
from parley.calls.store import CallNotFound, Store
from parley.calls.webhook_sender import WebhookSender
from parley.calls.webhooks import RetryTiming
from parley.logging import get_logger
from parley.support.egress import EgressPolicy
from parley.support.taskset import TaskSet

if TYPE_CHECKING:
    from parley.agents import AgentRegistry
    from parley.agents.spec import AgentSpec
    from parley.settings import Settings

log = get_logger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")  # ASCII digits only (\d takes any Unicode digit)
ROLES = ("agent", "caller", "system", "tool")
#: Role names other parts use, mapped to ours (the engine says `user` for the caller).
ROLE_ALIASES = {"user": "caller", "assistant": "agent"}
#: The transports a call can run over (`channel` of a call record).
CHANNELS = ("sip", "webrtc", "twilio", "livekit")


class CallRequestError(ValueError):
    """A bad value in a call request; `field` names it (the API answers 422 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def normalise_e164(value: str, field: str) -> str:
    """`value` without spaces, dots, dashes and brackets, checked as E.164 (`+` and 2–15 digits)."""
    cleaned = re.sub(r"[\s().-]", "", value or "")
    if not E164.match(cleaned):
        raise CallRequestError(field, f"{value!r} is not an E.164 number like +14155550123")
    return cleaned


class CallsService:
    """Store + queue + webhook sender (+ an optional dialer) behind one facade."""

    def __init__(self, settings: Settings, store: Store, queue: CallQueue, *,
                 agents: AgentRegistry | None = None, webhooks: WebhookSender | None = None) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.agents = agents
        self.webhooks = webhooks
        self.dialer: Dialer | None = None
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._analysis = TaskSet("calls-analysis")
        self._llms: dict[str, Any] = {}
        store.webhook_url_for = self.webhook_url_for
        store.on_outbox = self.wake_webhooks

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        agents: AgentRegistry | None = None,
        store: Store | None = None,
        queue: CallQueue | None = None,
        migrate: bool = True,
        send_webhooks: bool = True,
        webhook_timing: RetryTiming | None = None,
        webhook_poll_s: float = 1.0,
    ) -> CallsService:
        """Connect the store (migrating it), the queue (Redis when `REDIS_URL` is set) and start the
        webhook sender."""
        store = store or Store(db.create_engine(settings.effective_database_url, pool_size=settings.db_pool_size))
        if migrate:
            await store.upgrade()
        queue = queue or make_queue(settings, store, consumer=settings.worker_id or None)
        await queue.start()
        sender = None
        if send_webhooks:
            sender = WebhookSender(store, settings.webhook_secret.get_secret_value(), timing=webhook_timing,
                                   poll_s=webhook_poll_s, policy=EgressPolicy.of(settings))
            await sender.start()
        return cls(settings, store, queue, agents=agents, webhooks=sender)

    async def close(self) -> None:
        """Stop the dialer (live calls are hung up), the webhook sender, the queue and the store."""
        await self._analysis.cancel_all()
        if self.dialer is not None:
            self.remove_cancel_listener(self.dialer.cancel_live)
            await self.dialer.stop()
            self.dialer = None
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.queue.close()
        await self.store.close()

    # --- agents -----------------------------------------------------------------------------------

    def agent_spec(self, name: str) -> AgentSpec | None:
        """The settings of the agent called `name`, None when there is no such agent (or no registry)."""
        if self.agents is None:
            return None
        try:
            return self.agents.get(name).spec
        except KeyError:
            return None

    def agent_key(self, name: str | None) -> str:
        """The agent's key (file stem) for `name`, the default agent when None; CallRequestError if unknown."""
        name = name or self.settings.default_agent
        if self.agents is None:
            return name
        try:
            return self.agents.get(name).key
        except KeyError as exc:
            raise CallRequestError("agent", str(exc.args[0])) from None

    def webhook_url_for(self, call: Call) -> str | None:
        """The call's own webhook URL, else its agent's, else `WEBHOOK_URL`."""
        if call.webhook_url:
            return call.webhook_url
        spec = self.agent_spec(call.agent)
        if spec is not None and spec.webhook_url:
            return str(spec.webhook_url)
        return self.settings.webhook_url or None

    # --- creating and changing calls ----------------------------------------------------------------

    async def create_call(
        self,
        *,
        to_number: str,
        from_number: str | None = None,
        agent: str | None = None,
        direction: str = "outbound",
        caller_name: str | None = None,
        llm_prompt: str | None = None,
        greeting: str | None = None,
        variables: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        schedule_at: datetime | None = None,
        max_retries: int | None = None,
        retry_backoff_s: float | None = None,
        webhook_url: str | None = None,
        trunk: str | None = None,
        status: str | None = None,
        sip_call_id: str | None = None,
        channel: str = "sip",
        external_id: str | None = None,
        call_id: str | None = None,
        worker: str | None = None,
    ) -> Call:
        """Record a call. Outbound calls start `queued` and get a dial job (due at `schedule_at`);
        inbound ones start `ringing` (or `in_progress`). `call_id` chooses the id (the gateway reserves
        the call's slot under it first; a campaign claims a recipient with it before the call exists),
        `worker` names the worker running it. Raises `CallRequestError` naming a bad field."""
        if direction not in ("outbound", "inbound"):
            raise CallRequestError("direction", "must be outbound or inbound")
        if channel not in CHANNELS:
            raise CallRequestError("channel", f"must be one of {', '.join(CHANNELS)}")
        agent_key = self.agent_key(agent)
        if direction == "outbound":
            to_number = normalise_e164(to_number, "to_number")
            default_from = self.settings.sip_trunk_number or self.settings.twilio_phone_number or None
            from_number = normalise_e164(from_number, "from_number") if from_number else default_from
            initial = CallStatus.QUEUED
        else:
            initial = CallStatus.RINGING
        if status is not None:
            initial = parse_status(status)
        if max_retries is not None and not 0 <= max_retries <= 20:
            raise CallRequestError("max_retries", "must be between 0 and 20")
        if schedule_at is not None and schedule_at.tzinfo is None:
            schedule_at = schedule_at.replace(tzinfo=UTC)
        values = {
            "direction": direction, "status": initial.value, "agent": agent_key, "to_number": to_number,
            "from_number": from_number, "caller_name": caller_name, "llm_prompt": llm_prompt,
            "greeting": greeting, "variables": dict(variables or {}), "meta": dict(metadata or {}),
            "schedule_at": schedule_at, "max_retries": max_retries, "retry_backoff_s": retry_backoff_s,
            "webhook_url": webhook_url, "trunk": trunk, "sip_call_id": sip_call_id, "worker": worker,
            "channel": channel, "external_id": external_id,
        }
        if call_id is not None:
            values["id"] = call_id
        call = await self.store.add_call(values)
        if call.status == CallStatus.QUEUED:
            try:
                await self.queue.put(call.id, attempt=call.attempt, due_at=schedule_at)
            except Exception:
                # the call is stored as queued; the dialer's sweep queues it once the queue is back
                log.exception("queue unavailable; call stored and will be queued by the dialer's sweep",
                              call_id=call.id)
        log.info("call created", call_id=call.id, direction=direction, agent=agent_key, status=call.status)
        return call

    async def transition(self, call_id: str, status: str, *, reason: str | None = None,
                         sip_call_id: str | None = None, data: dict[str, Any] | None = None) -> Call:
        """Change a call's status (`IllegalTransition` if the state machine forbids it; `CallNotFound`)."""
        updates = {"sip_call_id": sip_call_id} if sip_call_id else None
        call = await self.store.transition(call_id, status, reason=reason, updates=updates, data=data)
        if call.status in TERMINAL:
            await self._ended(call)
        return call

    async def finish(self, call_id: str, status: str = "completed", reason: str | None = None) -> Call:
        """End a call in a final status, write its conversation file and send `call.ended`/`call.failed`."""
        if parse_status(status) not in TERMINAL:
            raise ValueError(f"finish needs a final status ({', '.join(sorted(TERMINAL))}), not {status!r}")
        return await self.transition(call_id, status, reason=reason)

    async def end(self, call_id: str, outcome: DialOutcome) -> Call | None:
        """Record how a call without a dialer (an inbound one) ended, as `outcomes.settle` decides: nothing
        when it already ended (a cancel hung it up), else its final status. None if there is no such call."""

        def decide(current: Call) -> list[tuple[str, str | None]]:
            decision = settle(current, outcome)
            if not isinstance(decision, Finish):
                return []
            if parse_status(decision.status) not in TERMINAL:
                raise ValueError(f"finish needs a final status ({', '.join(sorted(TERMINAL))}), "
                                 f"not {decision.status!r}")
            first = [(CallStatus.IN_PROGRESS.value, "answer reported at the end")] if decision.answer_first else []
            return [*first, (decision.status.value, decision.reason)]

        # read, decide and record in one transaction (the row locked throughout)
        settled = await self.store.transitions(call_id, decide)
        if settled is None:
            return None
        call, changed = settled
        if changed:
            await self._ended(call)
        return call

    async def cancel(self, call_id: str, reason: str = "canceled by request") -> Call:
        """Cancel a queued or live call. Live calls are hung up by the dialer or gateway holding them."""
        call = await self.store.transition(call_id, CallStatus.CANCELED, reason=reason)
        try:
            await self.queue.cancel(call_id)
        except Exception:
            log.exception("could not drop the queue job; the dialer will skip it", call_id=call_id)
        for listener in list(self._cancel_listeners):
            try:
                listener(call_id)
            except Exception:
                log.exception("cancel listener failed", call_id=call_id)
        await self._ended(call)
        return call

    async def add_transcript(self, call_id: str, role: str, text: str, *, at: datetime | None = None,
                             metadata: dict[str, Any] | None = None) -> None:
        """Append an utterance (`role`: agent, caller, system or tool; `user`/`assistant` are accepted)."""
        role = ROLE_ALIASES.get(role, role)
        if role not in ROLES:
            raise ValueError(f"transcript role must be one of {', '.join(ROLES)}, not {role!r}")
        await self.store.add_transcript(call_id, role, text, at=at, metadata=metadata)

    async def add_batch(self, call_id: str, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Store a burst of transcript entries and timeline events in one transaction (see
        `Store.add_batch`); transcript roles are checked and aliased as in `add_transcript`."""
        checked: list[tuple[str, dict[str, Any]]] = []
        for kind, item in entries:
            if kind == "transcript":
                role = ROLE_ALIASES.get(item["role"], item["role"])
                if role not in ROLES:
                    raise ValueError(f"transcript role must be one of {', '.join(ROLES)}, not {role!r}")
                item = {**item, "role": role}
            checked.append((kind, item))
        await self.store.add_batch(call_id, checked)

    async def add_event(self, call_id: str, type_: str, data: dict[str, Any] | None = None) -> None:
        """Append a timeline event (dtmf, transfer, tool call, interruption, inbound webhook …)."""
        await self.store.add_event(call_id, type_, data)

    async def update(self, call_id: str, **fields: Any) -> Call:
        """Set sip_call_id, trunk, recording_path, worker, metadata (as `meta`) or variables."""
        return await self.store.update_call(call_id, **fields)

    async def set_recording(self, call_id: str, path: Path) -> Call:
        """Remember where the call's recording file is."""
        return await self.store.update_call(call_id, recording_path=str(path))

    # --- reading ----------------------------------------------------------------------------------

    async def get(self, call_id: str) -> CallDetail | None:
        return await self.store.get_detail(call_id)

    async def get_call(self, call_id: str) -> Call | None:
        return await self.store.get_call(call_id)

    async def transcript(self, call_id: str) -> list[TranscriptEntry]:
        return await self.store.transcript(call_id)

    async def list_calls(self, **filters: Any) -> tuple[list[Call], int | None]:
        return await self.store.list_calls(**filters)

    # --- dialer, webhooks, cancellation --------------------------------------------------------------

    async def start_dialer(self, place_call: PlaceCall, *, limits: DialerLimits | None = None,
                           retry: RetryPolicy | None = None, **options: Any) -> Dialer:
        """Start dialing queued calls through `place_call` (one dialer per service). Limits default to
        `NUM_AGENTS` concurrent calls and `MAX_CALLS_PER_SECOND`; `close()` stops it."""
        if self.dialer is not None:
            raise RuntimeError("a dialer is already running for this service")
        limits = limits or DialerLimits(max_concurrent=self.settings.num_agents,
                                        calls_per_second=self.settings.max_calls_per_second)
        self.dialer = Dialer(self.store, self.queue, place_call, limits=limits, retry=retry,
                             agent_spec=self.agent_spec, on_ended=self._ended, **options)
        await self.dialer.start()
        self.add_cancel_listener(self.dialer.cancel_live)
        return self.dialer

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        """`listener(call_id)` runs when a call is canceled (the gateway hangs up live calls with it)."""
        self._cancel_listeners.append(listener)

    def remove_cancel_listener(self, listener: Callable[[str], None]) -> None:
        if listener in self._cancel_listeners:
            self._cancel_listeners.remove(listener)

    def wake_webhooks(self) -> None:
        if self.webhooks is not None:
            self.webhooks.wake()

    async def fail_stale_calls(self, *, direction: str | None = None, worker: str | None = None,
                               reason: str = "worker stopped during the call") -> int:
        """Mark calls left active by a dead process as failed (the gateway calls this for inbound calls)."""
        n = 0
        for call in await self.store.calls_in({s.value for s in ACTIVE}, worker=worker):
            if direction and call.direction != direction:
                continue
            try:
                await self.finish(call.id, CallStatus.FAILED, reason)
                n += 1
            except IllegalTransition:
                continue
        return n

    # --- post-call analysis -------------------------------------------------------------------------

    async def analyze(self, call_id: str, *, resend: bool = False) -> dict[str, Any]:
        """Run the agent's `analysis:` on a finished call with its LLM, store it on the call and queue the
        signed `call.analyzed` webhook (once per call unless `resend`). `CallNotFound`; ValueError when the
        agent has no `analysis:` or the call has not ended."""
        from parley.calls import analysis as post_call
        from parley.providers.factory import build_llm

        detail = await self.store.get_detail(call_id)
        if detail is None:
            raise CallNotFound(call_id)
        if detail.call.status not in TERMINAL:
            raise ValueError(f"call {call_id} is {detail.call.status}; analysis runs after the call ends")
        spec = self.agent_spec(detail.call.agent)
        if spec is None or spec.analysis is None:
            raise ValueError(f"agent {detail.call.agent!r} has no analysis: block")
        llm = self._llms.get(detail.call.agent)
        if llm is None:
            llm = self._llms[detail.call.agent] = await asyncio.to_thread(
                build_llm, spec.components.llm, self.settings, agent=spec)
        result = (await post_call.analyze(detail, spec.analysis, llm)).to_dict()
        await self.store.record_analysis(call_id, result, post_call.webhook_body, resend=resend)
        await self._ended_file(call_id)
        log.info("call analysed", call_id=call_id, valid=result["valid"], success=result["success"])
        return result

    def _analyze_later(self, call: Call) -> None:
        spec = self.agent_spec(call.agent)
        if spec is None or spec.analysis is None or call.answered_at is None:
            return

        async def run() -> None:
            try:
                await self.analyze(call.id)
            except Exception:
                log.exception("post-call analysis failed", call_id=call.id)

        self._analysis.spawn(run(), name=f"analysis-{call.id}")
    async def worker_lost(self, worker: str) -> tuple[int, int]:
        """A worker is gone (its lease expired): close its active calls `failed` / `worker_lost` (their
        transcripts so far stay, and go out with the webhook and the conversation file) and hand the dial
        jobs it had taken back to the queue. Returns (calls closed, jobs handed back)."""
        from parley.calls.workers import WORKER_LOST

        closed = await self.fail_stale_calls(worker=worker, reason=WORKER_LOST)
        jobs = await self.queue.release_consumer(worker)
        if closed or jobs:
            log.warning("closed the calls of a lost worker", worker=worker, calls=closed, jobs_requeued=jobs)
        return closed, jobs

    async def _ended(self, call: Call) -> None:
        self._analyze_later(call)
        await self._ended_file(call.id)

    async def _ended_file(self, call_id: str) -> None:
        try:
            detail = await self.store.get_detail(call_id)
            if detail is not None:
                await asyncio.to_thread(export.write_conversation, self.settings.data_dir, detail)
        except Exception:
            log.exception("could not write the conversation file", call_id=call_id)

    # --- health and metrics ---------------------------------------------------------------------------

    async def health_db(self) -> str:
        return await self.store.ping()

    async def health_queue(self) -> str:
        return await self.queue.health()

    async def refresh_metrics(self) -> None:
        """Update the gauges that mirror stored state (called before each scrape)."""
        counts = await self.store.counts_by_status()
        try:
            depth: int | None = await self.queue.depth()
        except Exception:  # noqa: BLE001 - an unreachable queue must not break the scrape
            depth = None
        pending = (await self.store.webhook_counts()).get("pending", 0)
        metrics.set_call_counts(counts, depth, pending)


__all__ = ["CallNotFound", "CallRequestError", "CallsService", "IllegalTransition", "normalise_e164"]
