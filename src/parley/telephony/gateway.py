"""The SIP gateway: joins the SIP endpoint, the conversation engine and the calls service.

Inbound: INVITE → trunk authentication (address or digest, else 403) → numbers the trunk carries (404)
→ dispatch rule (404) → optional incoming-call webhook (may pick agent/variables or reject) → capacity
(486 per trunk, 503 overall) → answer → `Conversation` over a `SipChannel` → BYE from either side.
Outbound: `place_call(call)` for the dialer: INVITE through the trunk with digest auth, progress on the
timeline, busy / no-answer / rejected mapped to outcomes, then the same conversation.

Every refused INVITE is logged with the reason in words (source address, called number, closest trunk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from parley.agents import Agent, AgentRegistry
from parley.calls.dialer import DialerLimits, DialRefusal
from parley.calls import metrics
from parley.calls.outcomes import DialOutcome
from parley.calls.records import Call as CallRecord
from parley.calls.service import CallsService
from parley.calls.slots import CallSlots, Claim
from parley.engine.session import EngineCache, Engines
from parley.logging import bind_call, get_logger
from parley.settings import Settings
from parley.support.egress import EgressPolicy
from parley.support.egress_http import guarded_client
from parley.support.loop_load import LoopLoad, start_loop_load
from parley.support.taskset import TaskSet
from parley.sip.auth import Credentials
from parley.sip.call import Call as SipCall
from parley.sip.call import IncomingCall
from parley.sip.invite_client import Progress
from parley.sip.endpoint import SipEndpoint
from parley.sip.errors import CallFailed
from parley.sip.guard import SipLimits
from parley.sip.register import Registration
from parley.telephony.admission import (
    Refusal,
    Route,
    apply_webhook_answer,
    capacity_claims,
    check_load,
    check_number,
    match_trunk,
    route,
)
from parley.telephony.conversation_run import run_recorded
from parley.telephony.event_writer import CallEventWriter
from parley.telephony.recording import Recorder
from parley.telephony.sip_channel import SipChannel
from parley.telephony.store import TelephonyStore
from parley.telephony.trunks import DispatchRule, Trunk

log = get_logger(__name__)

BUSY = {486, 600}
NO_ANSWER = {408, 480, 487}
REASONS_403 = "credentials rejected, check username/password or the provider's IP access list"


def describe_failure(code: int, reason: str, trunk: str | None) -> str:
    """A SIP failure in words, with the usual cause when there is one."""
    where = f"trunk {trunk!r}" if trunk else "the far end"
    hint = {
        401: "authentication required: set the trunk's username/password",
        403: REASONS_403 + " (some providers want the SIP username, not the number, in From: see from_user)",
        404: "the number does not exist or the trunk does not route it",
        407: "proxy authentication required: set the trunk's username/password",
        408: "no answer in time",
        480: "the callee is temporarily unavailable",
        484: "the number is incomplete: dial E.164 (+country…)",
        486: "busy",
        488: "no common codec (we offer PCMU, PCMA, G.722)",
        503: "the trunk is unavailable or over capacity",
    }.get(code, "")
    return f"{code} {reason} from {where}" + (f": {hint}" if hint else "")


@dataclass
class LiveCall:
    """A call this gateway is running."""

    record_id: str
    sip: SipCall | None
    trunk: str | None
    agent: str
    direction: str
    task: asyncio.Task[Any] | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)  #: when the INVITE arrived / dial began


@dataclass
class TrunkState:
    """What `parley trunk status` shows for one trunk."""

    last_error: str | None = None
    last_error_at: float | None = None
    registered: bool | None = None


class Gateway:
    """Runs phone calls: inbound from the SIP endpoint, outbound for the dialer.

    About 400 lines on purpose: inbound and outbound share the live-call table, the trunk state and the
    conversation run; every decision is elsewhere (`admission.py` who may call and where it goes,
    `calls/outcomes.py` how a call's end is recorded)."""

    def __init__(
        self,
        settings: Settings,
        agents: AgentRegistry,
        calls: CallsService,
        *,
        endpoint: SipEndpoint | None = None,
        loopback_fallback: bool = True,
        slots: CallSlots | None = None,
        worker_id: str | None = None,
        cluster: bool = False,
    ) -> None:
        self.settings = settings
        self.agents = agents
        self.calls = calls
        self.telephony = TelephonyStore(calls.store)
        self.endpoint = endpoint or SipEndpoint(
            host=settings.sip_host,
            port=settings.sip_port,
            transports=("udp", "tcp") if settings.sip_transport == "both" else (settings.sip_transport,),
            public_host=settings.sip_public_host or None,
            rtp_port_range=(settings.rtp_port_min, settings.rtp_port_max),
            server_header=settings.sip_server_header or None,
            user_agent=settings.sip_user_agent,
            limits=SipLimits(
                requests_per_second=settings.sip_rate_limit, request_burst=int(2 * settings.sip_rate_limit),
                invites_per_source=settings.sip_invites_per_source,
                tcp_max_connections=settings.sip_tcp_max_connections,
                tcp_idle_timeout=settings.sip_tcp_idle_timeout_s,
                trusted_sources=frozenset(s.strip() for s in settings.sip_trusted_sources.split(",") if s.strip()),
            ),
        )
        self.loopback_fallback = loopback_fallback
        #: Concurrency caps, reserved atomically before any await (this worker's NUM_AGENTS, and the
        #: trunk/agent/MAX_CONCURRENT_CALLS caps, cluster-wide when the slots have a Redis side).
        self.slots = slots or CallSlots(settings.num_agents)
        self.worker_id = worker_id
        #: Part of a cluster: calls left by a dead worker are closed by the registry's reaper, not here.
        self.cluster = cluster
        #: Draining for shutdown: new INVITEs get 503, live calls finish.
        self.draining = False
        #: How busy this process's event loop is (sampled while started): new calls are refused past the
        #: MAX_LOOP_BUSY / MAX_LOOP_WAIT limits.
        self.load = LoopLoad()
        self._load_task: asyncio.Task[None] | None = None
        self.live: dict[str, LiveCall] = {}
        self.trunk_state: dict[str, TrunkState] = {}
        self._engines = EngineCache(settings)
        self._trunks: list[Trunk] = []
        self._rules: list[DispatchRule] = []
        self._http: httpx.AsyncClient | None = None
        self._registrations: list[Registration] = []
        self._tasks = TaskSet("gateway")

    @property
    def rules(self) -> list[DispatchRule]:
        """The dispatch rules in use (as of the last `reload()`)."""
        return list(self._rules)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load trunks, start the SIP endpoint and any trunk registrations; warm the default agent."""
        await self.reload()
        self._http = guarded_client(EgressPolicy.of(self.settings))  # SSRF guard: support/egress.py
        self._load_task = start_loop_load(self.load, lambda: self.slots.live)
        metrics.LOOP_BUSY.set_function(lambda: self.load.busy)
        metrics.LOOP_WAIT.set_function(lambda: self.load.waiting)
        self.endpoint.on_incoming = self._on_incoming
        await self.endpoint.start()
        self.calls.add_cancel_listener(self._on_cancel)
        if not self.cluster:
            failed = await self.calls.fail_stale_calls(direction="inbound")
            if failed:
                log.warning("marked inbound calls left by a stopped process as failed", count=failed)
        for trunk in self._trunks:
            if trunk.outbound and trunk.outbound.registration:
                self._tasks.spawn(self._register(trunk), name=f"register-{trunk.name}")
        if not [t for t in self._trunks if t.inbound]:
            log.warning("no inbound trunk configured: accepting SIP calls from loopback only, "
                        "answered by the default agent", agent=self.settings.default_agent,
                        sip=f"{self.settings.sip_host}:{self.endpoint.port}")

    async def warm(self, agent_name: str | None = None) -> None:
        """Build and load the engines of an agent (the default one) before the first call."""
        engines = await self.engines(self.agents.get(agent_name or self.settings.default_agent))
        await engines.warm()

    async def drain(self, timeout_s: float) -> int:
        """Take no new calls (503) and wait up to `timeout_s` for the live ones to end; returns how many
        are still live (`close()` hangs them up)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if self.live:
            log.info("draining: waiting for live calls to end", live=len(self.live), timeout_s=timeout_s)
        while self.live and loop.time() < deadline:
            await asyncio.sleep(0.2)
        return len(self.live)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Hang up live calls, stop registrations and the endpoint; waits up to `timeout_s` for the BYEs'
        answers and again for the calls' tasks (a silent peer would hold a BYE for 32 s)."""
        self.draining = True
        self.calls.remove_cancel_listener(self._on_cancel)
        # every BYE at once, not waiting out a silent peer's transaction timeout (32 s) call by call
        byes = [asyncio.ensure_future(live.sip.hangup()) for live in list(self.live.values())
                if live.sip is not None and not live.sip.ended]
        if byes:
            await asyncio.wait(byes, timeout=timeout_s)
        tasks = [lc.task for lc in self.live.values() if lc.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        await self._tasks.cancel_all(timeout_s=timeout_s)
        for reg in self._registrations:
            await reg.stop()
        await self.endpoint.close()
        if self._load_task is not None:
            self._load_task.cancel()
        if self._http is not None:
            await self._http.aclose()

    async def reload(self) -> None:
        """Re-read trunks and dispatch rules from the store."""
        self._trunks = await self.telephony.trunks()
        self._rules = await self.telephony.rules()
        # a carrier sends many calls from a few addresses: its trunk's addresses skip the per-source limits
        self.endpoint.transport.exempt_networks(
            [n for t in self._trunks if t.inbound is not None for n in t.inbound.allowed_addresses])

    async def engines(self, agent: Agent) -> Engines:
        """The agent's providers, built once per process (off the event loop: models load here).

        Calls arriving while they are being built wait for the same build."""
        return await self._engines.get(agent)

    async def _register(self, trunk: Trunk) -> None:
        out = trunk.outbound
        assert out is not None and out.username and out.password
        registrar = f"sip:{out.host}:{out.port}"
        aor = f"sip:{out.username}@{out.host}"
        creds = Credentials(out.username, out.password.get_secret_value())
        try:
            reg = self.endpoint.registration(registrar, aor, creds, expires=out.register_expires)
            await reg.start()
            self._registrations.append(reg)
            self.state(trunk.name).registered = True
        except Exception as exc:
            self._trunk_error(trunk.name, f"REGISTER failed: {exc}")
            self.state(trunk.name).registered = False

    def state(self, trunk: str) -> TrunkState:
        return self.trunk_state.setdefault(trunk, TrunkState())

    def _trunk_error(self, trunk: str | None, message: str) -> None:
        if trunk is None:
            return
        st = self.state(trunk)
        st.last_error = message
        st.last_error_at = time.time()

    def active_counts(self) -> tuple[int, Counter[str]]:
        """Live calls overall and per trunk."""
        per_trunk: Counter[str] = Counter(lc.trunk for lc in self.live.values() if lc.trunk)
        return len(self.live), per_trunk

    # --- inbound ---------------------------------------------------------------------------------

    async def _refuse(self, inc: IncomingCall, refusal: Refusal, *, about_trunk: bool = True) -> None:
        """Answer the INVITE with the refusal. `about_trunk=False`: the reason is this worker's own state
        (draining, overloaded, its slots full), not the trunk's: the trunk's last error is left alone."""
        log.warning("inbound call refused", code=refusal.code, reason=refusal.reason,
                    source=f"{inc.source_address[0]}:{inc.source_address[1]}", called=inc.called_number,
                    caller=inc.caller_number, sip_call_id=inc.call_id)
        if about_trunk:
            self._trunk_error(refusal.trunk, f"refused inbound call: {refusal.reason}")
        phrase = {403: "Forbidden", 404: "Not Found", 486: "Busy Here", 503: "Service Unavailable"}
        headers = {"Retry-After": "5"} if refusal.code == 503 else None
        await inc.reject(refusal.code, phrase.get(refusal.code), headers=headers)

    async def _authenticate(self, inc: IncomingCall) -> Trunk | None | Refusal:
        """The trunk the INVITE came through; None for the no-trunk loopback mode; or a refusal.

        A `Refusal` with code 0 means a digest challenge (or a 403 for wrong credentials) was already sent."""
        source_ip = inc.source_address[0]
        match = match_trunk(self._trunks, source_ip, loopback_fallback=self.loopback_fallback)
        if isinstance(match, Refusal):
            return match
        if not match.challenge:
            return match.trunk
        users = {t.inbound.username: t for t in match.challenge if t.inbound and t.inbound.username}

        def lookup(username: str) -> str | None:
            trunk = users.get(username)
            if trunk is None or trunk.inbound is None or trunk.inbound.password is None:
                return None
            return trunk.inbound.password.get_secret_value()

        realm = match.challenge[0].inbound.realm if match.challenge[0].inbound else "parley"
        username = await inc.check_auth(realm, lookup)
        if username is None:
            if inc.is_final:  # 403 already sent for wrong credentials
                names = ", ".join(repr(t.name) for t in match.challenge)
                log.warning("inbound call refused", code=403, source=source_ip, called=inc.called_number,
                            reason=f"digest credentials from {source_ip} rejected (trunks {names}); "
                                   "check the caller's username/password")
                for t in match.challenge:
                    self._trunk_error(t.name, f"digest credentials from {source_ip} rejected")
            return Refusal(0, "challenged")
        return users[username]

    async def _on_incoming(self, inc: IncomingCall) -> None:
        started = time.monotonic()
        trunk = await self._authenticate(inc)
        if isinstance(trunk, Refusal):
            if trunk.code:
                await self._refuse(inc, trunk)
            return
        called = inc.called_number
        refusal = check_number(trunk, called)
        if refusal:
            await self._refuse(inc, refusal)
            return
        trunk_name = trunk.name if trunk else None
        decision = route(self._rules, called, trunk_name, self.settings.default_agent)
        if isinstance(decision, Refusal):
            await self._refuse(inc, decision)
            return
        decision = await self._ask_webhook(inc, trunk_name, decision)
        if isinstance(decision, Refusal):
            await self._refuse(inc, decision)
            return
        try:
            agent = self.agents.get(decision.agent)
        except KeyError as exc:
            await self._refuse(inc, Refusal(404, f"dispatch chose agent {decision.agent!r}: {exc.args[0]}",
                                            trunk_name))
            return
        if self.draining:
            await self._refuse(inc, Refusal(503, "this worker is draining for shutdown", trunk_name),
                               about_trunk=False)
            return
        busy = self.overloaded("inbound")
        if busy is not None:
            await self._refuse(inc, dataclasses.replace(busy, trunk=trunk_name), about_trunk=False)
            return
        claims = capacity_claims(trunk, agent.key, agent.spec.max_concurrent_calls,
                                 self.settings.max_concurrent_calls)
        call_id = str(uuid.uuid4())
        # the slot is taken before the first await: a burst of INVITEs cannot pass the same free slot
        full = self.slots.try_local(call_id, claims)
        live = LiveCall(call_id, None, trunk_name, agent.key, "inbound", asyncio.current_task(), started)
        if full is None:
            self.live[call_id] = live
        try:
            if full is None:
                # the cluster caps and the count in the calls-per-second window: one round trip to Redis
                full = await self.slots.reserve_shared(call_id, claims, note_start="global")
            if full is not None:
                await self._refuse(inc, Refusal(full.code, full.reason, trunk_name),
                                   about_trunk=not self.slots.is_this_workers(full))
                return
            await self._answer(inc, live, agent, trunk_name, decision)
        finally:
            self.live.pop(call_id, None)
            await self.slots.release(call_id)

    async def _answer(self, inc: IncomingCall, live: LiveCall, agent: Agent, trunk_name: str | None,
                      decision: Route) -> None:
        """Record, answer and run an admitted inbound call (its slot is held by the caller)."""
        called = inc.called_number
        # one write before the 200 OK: the record, with where the INVITE came from in its metadata
        record = await self.calls.create_call(
            to_number=called, from_number=inc.caller_number or None, agent=agent.key, direction="inbound",
            caller_name=inc.from_display_name, variables=decision.variables, trunk=trunk_name,
            sip_call_id=inc.call_id, call_id=live.record_id, worker=self.worker_id,
            metadata={"sip": {"source": f"{inc.source_address[0]}:{inc.source_address[1]}", "called": called,
                              "caller": inc.caller_number, "rule": decision.rule, "transport": inc.transport}},
        )
        with bind_call(record.id, direction="inbound"):
            try:
                sip = await inc.accept()
            except CallFailed as exc:
                failed = DialOutcome("failed", describe_failure(exc.code, exc.reason, trunk_name))
                await self.calls.end(record.id, failed)
                return
            live.sip = sip
            metrics.CALL_SETUP.observe(time.monotonic() - live.started)
            if not await self._confirmed(sip):
                # answered but never ACKed (Timer H): the slot goes back now, the attempt is counted
                self.slots.unacked += 1
                metrics.SIP_UNACKED.inc()
                await self.calls.end(record.id, DialOutcome("failed", "no ACK for the 200 OK (Timer H): "
                                                                       "the caller never confirmed the call"))
                return
            await self.calls.transition(record.id, "in_progress")
            try:
                ended = await self._converse(record.id, sip, agent, "inbound", decision.variables, None, None)
            except asyncio.CancelledError:
                await self.calls.end(record.id, DialOutcome("canceled", "canceled"))
                raise
            # the conversation is over: its slot is free before the record is closed
            await self.slots.release(record.id)
            await self.calls.end(record.id, ended)

    @staticmethod
    async def _confirmed(sip: SipCall) -> bool:
        """Wait for the ACK of our 200 OK; False when the call ended first (the SIP layer gives up after
        Timer H, 64*T1, and sends BYE)."""
        if sip.confirmed.is_set():
            return True
        ack = asyncio.ensure_future(sip.confirmed.wait())
        ended = asyncio.ensure_future(sip.wait_ended())
        try:
            await asyncio.wait({ack, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ack.cancel()
            ended.cancel()
        return sip.confirmed.is_set()

    async def _ask_webhook(self, inc: IncomingCall, trunk: str | None, decision: Route) -> Route | Refusal:
        """Let the incoming-call webhook choose the agent and variables, or reject; on timeout the rule decides."""
        url = self.settings.incoming_call_webhook_url
        if not url or self._http is None:
            return decision
        body = {"type": "call.incoming", "from": inc.caller_number, "to": inc.called_number, "trunk": trunk,
                "source": inc.source_address[0], "sip_call_id": inc.call_id, "agent": decision.agent,
                "caller_name": inc.from_display_name}
        try:
            resp = await self._http.post(url, json=body, timeout=self.settings.incoming_call_webhook_timeout_s)
            resp.raise_for_status()
            answer = resp.json()
        except Exception as exc:
            log.warning("incoming-call webhook gave no usable answer; the dispatch rule decides",
                        url=url, error=str(exc) or type(exc).__name__)
            return decision
        return apply_webhook_answer(answer, decision, trunk)

    # --- outbound --------------------------------------------------------------------------------

    def outbound_trunk(self, name: str | None) -> Trunk | None:
        """The named outbound trunk, else the first one with an outbound side."""
        candidates = [t for t in self._trunks if t.outbound]
        if name:
            return next((t for t in candidates if t.name == name), None)
        return candidates[0] if candidates else None

    def trunk_of(self, record: CallRecord) -> str | None:
        """The trunk an outbound call will use (for the dialer's per-trunk caps)."""
        trunk = self.outbound_trunk(record.trunk)
        return trunk.name if trunk else record.trunk

    def dialer_limits(self) -> DialerLimits:
        """Dialer caps: NUM_AGENTS and MAX_CALLS_PER_SECOND overall, the trunks' outbound caps per trunk."""
        outbound = [t for t in self._trunks if t.outbound]
        return DialerLimits(
            max_concurrent=self.settings.num_agents,
            calls_per_second=self.settings.max_calls_per_second,
            per_trunk={t.name: t.outbound.max_concurrent_calls for t in outbound
                       if t.outbound and t.outbound.max_concurrent_calls},
            per_trunk_cps={t.name: t.outbound.max_calls_per_second for t in outbound
                           if t.outbound and t.outbound.max_calls_per_second},
        )

    async def admit_other(self, holder: str, agent: Agent) -> Claim | None:
        """A call that is not SIP (a browser call) asks for a slot under the same caps (this worker,
        the agent, MAX_CONCURRENT_CALLS, cluster-wide with Redis). None = admitted; release with
        `release_other(holder)`."""
        if self.draining:
            return Claim("worker", 0, 503, "this worker is draining for shutdown")
        busy = self.overloaded("browser")
        if busy is not None:
            return Claim("worker", 0, busy.code, busy.reason)
        claims = capacity_claims(None, agent.key, agent.spec.max_concurrent_calls,
                                 self.settings.max_concurrent_calls)
        return await self.slots.reserve(holder, claims)

    async def release_other(self, holder: str) -> None:
        await self.slots.release(holder)

    def overloaded(self, kind: str, *, count: bool = True) -> Refusal | None:
        """A 503 refusal while this worker's event loop is over its limits (counted by `kind` of call unless
        not `count`: the dialer asks again for the same parked job)."""
        s = self.settings
        refusal = check_load(self.load.reading(self.slots.live), max_busy=s.max_loop_busy,
                             max_wait=s.max_loop_wait)
        if refusal is not None and count:
            metrics.OVERLOAD_REFUSALS.labels(kind).inc()
        return refusal

    def _outbound_claims(self, record: CallRecord) -> list[Claim]:
        trunk = self.outbound_trunk(record.trunk)
        try:
            agent_cap = self.agents.get(record.agent).spec.max_concurrent_calls
        except KeyError:
            agent_cap = None
        return capacity_claims(trunk, record.agent, agent_cap, self.settings.max_concurrent_calls,
                               direction="outbound")

    async def admit_outbound(self, record: CallRecord) -> DialRefusal | None:
        """The dialer asks before dialing: reserve the call's slots (this worker, trunk, agent, cluster)
        and take a start within MAX_CALLS_PER_SECOND across the cluster. None = go; else why not: this
        worker's own state (draining, overloaded, its slots full: the dialer hands the job to the queue for
        another worker) or a shared cap (the dialer keeps the job and asks again later)."""
        if self.draining:
            return DialRefusal("this worker is draining for shutdown", here_only=True)
        busy = self.overloaded("outbound", count=False)
        if busy is not None:
            return DialRefusal(busy.reason, here_only=True)
        full = await self.slots.reserve(record.id, self._outbound_claims(record))
        if full is not None:
            return DialRefusal(full.reason, here_only=self.slots.is_this_workers(full))
        try:
            await self.slots.wait_rate("global", self.settings.max_calls_per_second)
        except BaseException:
            await self.slots.release(record.id)
            raise
        return None

    async def release_outbound(self, record: CallRecord) -> None:
        """Free an outbound call's slots (idempotent; `place_call` frees them too)."""
        await self.slots.release(record.id)

    async def place_call(self, record: CallRecord) -> DialOutcome:
        """The dialer's `place_call`: dial, converse, and report how it ended. Its slots are the ones
        `admit_outbound` reserved, else reserved here (refused: a failed attempt naming the full cap)."""
        try:
            return await self._place_call(record)
        finally:
            await self.slots.release(record.id)

    async def _place_call(self, record: CallRecord) -> DialOutcome:
        await self.reload()
        if not self.slots.holds(record.id):
            full = await self.slots.reserve(record.id, self._outbound_claims(record))
            if full is not None:
                return DialOutcome("failed", f"over capacity: {full.reason}")
        trunk = self.outbound_trunk(record.trunk)
        if trunk is None or trunk.outbound is None:
            why = (f"no outbound trunk named {record.trunk!r}" if record.trunk
                   else "no outbound trunk configured: add one with `parley trunk ensure`")
            return DialOutcome("failed", why)
        out = trunk.outbound
        if out.transport == "tls":
            return DialOutcome("failed", f"trunk {trunk.name!r} uses TLS, which Parley's SIP stack does not "
                                         "support yet: use transport udp or tcp")
        try:
            agent = self.agents.get(record.agent)
        except KeyError as exc:
            return DialOutcome("failed", str(exc.args[0]))
        host = self.endpoint.public_host
        from_user = out.from_user_part() if out.from_user == "username" or not record.from_number \
            else record.from_number
        creds = Credentials(out.username, out.password.get_secret_value()) if out.username and out.password \
            else None
        live = LiveCall(record.id, None, trunk.name, agent.key, "outbound", asyncio.current_task())
        self.live[record.id] = live
        if self.worker_id and record.worker != self.worker_id:
            await self.calls.update(record.id, worker=self.worker_id)
        try:
            with bind_call(record.id, direction="outbound"):
                return await self._dial(record, trunk, agent, f"sip:{from_user}@{host}", creds, live)
        finally:
            self.live.pop(record.id, None)

    async def _dial(self, record: CallRecord, trunk: Trunk, agent: Agent, from_: str,
                    creds: Credentials | None, live: LiveCall) -> DialOutcome:
        out = trunk.outbound
        assert out is not None
        uri = out.uri_for(record.to_number or "")
        outgoing = await self.endpoint.invite(
            uri, from_=from_, auth=creds, headers=dict(out.headers), display_name=record.caller_name,
            timeout=self.settings.ring_timeout_s, transport=out.transport,
        )
        await self.calls.update(record.id, sip_call_id=outgoing.call_id, trunk=trunk.name)
        ringing = False
        progress: asyncio.Queue[Progress] = asyncio.Queue()
        for step in outgoing.history:
            progress.put_nowait(step)
        outgoing.on_progress = progress.put_nowait
        # both waits are awaited right here; `finally` cancels whichever is still pending
        answer = asyncio.create_task(outgoing.answered(), name=f"answer-{record.id}")
        step_task: asyncio.Task[Progress] | None = None

        async def note(step: Progress) -> None:
            nonlocal ringing
            if step.code >= 200 and step.code not in (401, 407):
                return  # the final answer comes through `answer`
            await self.calls.add_event(record.id, "sip.progress", {"code": step.code, "reason": step.reason})
            if step.code in (180, 183) and not ringing:
                ringing = True
                await self.calls.transition(record.id, "ringing")

        try:
            while True:
                step_task = asyncio.create_task(progress.get(), name=f"progress-{record.id}")
                await asyncio.wait({step_task, answer}, return_when=asyncio.FIRST_COMPLETED)
                if not step_task.done():
                    step_task.cancel()
                    break
                await note(step_task.result())
            while not progress.empty():
                await note(progress.get_nowait())
            sip = await answer
        except asyncio.CancelledError:
            if not outgoing.done:
                await outgoing.cancel()
            raise
        except CallFailed as exc:
            text = describe_failure(exc.code, exc.reason, trunk.name)
            if exc.code in (401, 403, 407):
                self._trunk_error(trunk.name, text)
            status = "busy" if exc.code in BUSY else "no_answer" if exc.code in NO_ANSWER else "failed"
            return DialOutcome(status, text, outgoing.call_id)
        finally:
            for pending in (answer, step_task):
                if pending is not None and not pending.done():
                    pending.cancel()
        live.sip = sip
        try:
            if not ringing:
                await self.calls.transition(record.id, "ringing")
            await self.calls.transition(record.id, "in_progress")
            if agent.spec.amd.enabled:
                from parley.telephony.voicemail import screen

                try:
                    screening = await screen(self.calls, record.id, dict(record.metadata or {}), sip, agent,
                                             await self.engines(agent), dict(record.variables or {}))
                except Exception:
                    log.exception("answering-machine detection failed; the agent talks")
                else:
                    if not screening.talk:
                        return DialOutcome("completed", screening.reason, outgoing.call_id)
            ended = await self._converse(record.id, sip, agent, "outbound", dict(record.variables or {}),
                                         record.llm_prompt, record.greeting, caller_name=record.caller_name)
        except asyncio.CancelledError:
            await sip.hangup()
            raise
        return dataclasses.replace(ended, sip_call_id=outgoing.call_id)

    def _on_cancel(self, call_id: str) -> None:
        live = self.live.get(call_id)
        if live and live.task is not None and live.direction == "inbound" and live.sip is not None:
            self._tasks.spawn(live.sip.hangup(), name=f"hangup-{call_id}")

    # --- the conversation ------------------------------------------------------------------------

    async def _converse(self, call_id: str, sip: SipCall, agent: Agent, direction: Literal["inbound", "outbound"],
                        variables: dict[str, Any], llm_prompt: str | None, greeting: str | None,
                        caller_name: str | None = None) -> DialOutcome:
        """Run the agent on an answered call until it ends; store everything; returns how it ended (the
        caller records the final status: `CallsService.end` inbound, the dialer outbound)."""
        if caller_name:
            variables = {"caller_name": caller_name, **variables}
        recorder = None
        if agent.spec.recording:
            path = Path(self.settings.data_dir) / "recordings" / f"{call_id}.wav"
            recorder = Recorder(path, sip.rtp.sample_rate)
        channel = SipChannel(sip, recorder)
        writer = CallEventWriter(self.calls, call_id)
        reason = "failed"
        status = "completed"
        try:
            engines = await self.engines(agent)
            conversation = engines.conversation(
                channel, direction=direction, variables=variables, on_event=writer,
                system_prompt=llm_prompt or None, greeting=greeting,
            )
            max_s = agent.spec.max_duration_s
            reason = await run_recorded(conversation, channel, writer, max_s)
        except Exception as exc:
            log.exception("conversation failed", call_id=call_id)
            reason, status = f"conversation error: {exc}", "failed"
        finally:
            if not sip.ended:
                await sip.hangup()
            _count_media(sip)
            await writer.close()
            if recorder is not None:
                await self.calls.set_recording(call_id, recorder.close())
        return DialOutcome(status, reason)


def _count_media(sip: SipCall) -> None:
    """Add a finished call's RTP counters to the fleet metrics (late sends, jitter-buffer drops)."""
    try:
        stats = sip.rtp.stats()
    except Exception:  # noqa: BLE001 - metrics never break a call's end
        return
    metrics.RTP_SENT.inc(stats.packets_sent)
    metrics.RTP_LATE.inc(stats.late_sends)
    metrics.RTP_JITTER_DROPS.inc(stats.late + stats.overflow_dropped)
