"""`TwilioBridge`: Twilio calls joined to conversations and call records.

Inbound: `answer(form)` (the signed voice webhook) routes the call like an inbound SIP call — dispatch
rules by called number (trunk name `twilio-streams`), the incoming-call webhook, capacity — records it
(`channel: twilio`, the CallSid as `external_id`, a stream token's digest in its metadata) and answers
`<Connect><Stream>` with the call id and a single-use token as `<Parameter>`s. `run_stream(ws)` takes the
WebSocket: its `start` must carry the call id and the token (else the stream is closed before any agent
runs), then a `Conversation` runs over a `TwilioChannel` until `stop`, a hang-up, or bad input (closed
with the reason logged). Outbound: `place_call(record)` (the dialer's) creates the call through the REST
API with the same TwiML and waits for its stream, or for a status callback saying it never got answered.
`on_status(form)` maps Twilio's status callbacks to our call states.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from parley.agents import Agent, AgentRegistry
from parley.calls.outcomes import DialOutcome
from parley.calls.records import Call as CallRecord
from parley.calls.service import CallsService
from parley.calls.states import TERMINAL, IllegalTransition
from parley.engine.session import EngineCache, Engines
from parley.logging import bind_call, get_logger
from parley.settings import Settings
from parley.support.taskset import TaskSet
from parley.telephony.admission import Refusal, apply_webhook_answer, check_capacity, route
from parley.telephony.conversation_run import run_recorded
from parley.telephony.event_writer import CallEventWriter
from parley.telephony.recording import Recorder
from parley.telephony.store import TelephonyStore
from parley.telephony.twilio import protocol, tokens, twiml
from parley.telephony.twilio.channel import TwilioChannel
from parley.telephony.twilio.config import STATUS_PATH, TwilioConfig
from parley.telephony.twilio.rest import TwilioError, TwilioRest
from parley.telephony.twilio.status import map_status

log = get_logger(__name__)

#: The trunk name Twilio Media Streams calls carry in dispatch rules (`trunks: [twilio-streams]`).
TRUNK = "twilio-streams"
#: Seconds a WebSocket may take to send `start`.
START_TIMEOUT_S = 10.0
#: WebSocket close codes: policy violation (refused token), unsupported data (bad input).
CLOSE_REFUSED = 1008
CLOSE_BAD_INPUT = 1003


class StreamSocket(Protocol):
    """The WebSocket the stream route hands over (Starlette's `WebSocket`)."""

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Refused(Exception):
    """The webhook's call is refused; `twiml` is the answer (`<Reject>`)."""

    def __init__(self, reason: str, answer: str) -> None:
        super().__init__(reason)
        self.twiml = answer


@dataclass
class LiveStream:
    """A call whose stream is running (or an outbound call waiting for its stream)."""

    call_id: str
    agent: str
    direction: str
    channel: TwilioChannel | None = None
    #: outbound: resolved with None when the stream starts, or with an outcome when it never will
    answered: asyncio.Future[DialOutcome | None] = field(default_factory=asyncio.Future)
    #: outbound: resolved with how the conversation ended
    done: asyncio.Future[DialOutcome] = field(default_factory=asyncio.Future)
    #: the digest of the token a stream reconnecting after touch-tones must present
    resume_digest: str | None = None


class TwilioBridge:
    """Twilio webhooks and streams → call records and conversations (see the module docstring)."""

    def __init__(self, settings: Settings, agents: AgentRegistry, calls: CallsService, *,
                 engines: Callable[[Agent], Awaitable[Engines]] | None = None,
                 rest: TwilioRest | None = None, live_elsewhere: Callable[[], list[tuple[str | None, str]]]
                 | None = None, overloaded: Callable[[], Refusal | None] | None = None) -> None:
        self.settings = settings
        self.agents = agents
        self.calls = calls
        self.config = TwilioConfig.from_settings(settings)
        self.rest = rest if rest is not None else (TwilioRest(self.config) if self.config.has_credentials else None)
        self.telephony = TelephonyStore(calls.store)
        self.live: dict[str, LiveStream] = {}
        #: this process's event loop over its limits (the SIP gateway's load shedding), when it runs one
        self._overloaded = overloaded or (lambda: None)
        self._engines_for = engines
        self._engines = EngineCache(settings)
        self._live_elsewhere = live_elsewhere
        self._http = httpx.AsyncClient()
        self._tasks = TaskSet("twilio")

    async def close(self) -> None:
        for live in list(self.live.values()):
            if live.channel is not None:
                await live.channel.hangup("shutdown")
        await self._tasks.cancel_all(timeout_s=5)
        await self._http.aclose()

    async def engines(self, agent: Agent) -> Engines:
        if self._engines_for is not None:
            return await self._engines_for(agent)
        return await self._engines.get(agent)

    # --- inbound: the voice webhook --------------------------------------------------------------

    async def answer(self, form: dict[str, str], public_base: str) -> tuple[str, str]:
        """TwiML for an inbound call and its call id; `Refused` (with a `<Reject>`) when no agent takes it."""
        call_sid, called, caller = form.get("CallSid", ""), form.get("To", ""), form.get("From", "")
        if not call_sid.startswith("CA"):
            raise self._refuse(call_sid, called, Refusal(403, f"CallSid {call_sid[:40]!r} is not a Twilio call SID"))
        if self.config.account_sid and form.get("AccountSid") != self.config.account_sid:
            raise self._refuse(call_sid, called, Refusal(403, f"webhook for account {form.get('AccountSid')!r}, "
                                                              "not TWILIO_ACCOUNT_SID"))
        known, _ = await self.calls.list_calls(external_id=call_sid, limit=1)
        if known:
            # a signature carries no nonce: the same signed request sent again must not mint a new token
            raise self._refuse(call_sid, called, Refusal(403, f"a replayed voice webhook: CallSid {call_sid} "
                                                              f"was answered already (call {known[0].id})"))
        rules = await self.telephony.rules()
        decision = route(rules, called, TRUNK, self.settings.default_agent)
        if not isinstance(decision, Refusal):
            decision = await self._ask_webhook(form, decision)
        if isinstance(decision, Refusal):
            raise self._refuse(call_sid, called, decision)
        try:
            agent = self.agents.get(decision.agent)
        except KeyError as exc:
            raise self._refuse(call_sid, called, Refusal(404, f"dispatch chose agent {decision.agent!r}: "
                                                              f"{exc.args[0]}")) from None
        capacity = check_capacity(None, agent.key, agent.spec.max_concurrent_calls, self._live_pairs(),
                                  self.settings.num_agents)
        if capacity:
            raise self._refuse(call_sid, called, capacity)
        busy = self._overloaded()
        if busy is not None:
            raise self._refuse(call_sid, called, busy)
        token = tokens.new_token(self.config.token_ttl_s)
        stream_url = self.config.stream_url(public_base)
        record = await self.calls.create_call(
            to_number=called, from_number=caller or None, agent=agent.key, direction="inbound",
            caller_name=form.get("CallerName") or None, variables=decision.variables, trunk=TRUNK,
            channel="twilio", external_id=call_sid or None,
            metadata={"twilio": {"call_sid": call_sid, "account_sid": form.get("AccountSid", ""),
                                 "called": called, "caller": caller, "rule": decision.rule,
                                 "stream_url": stream_url, **token.stored()}},
        )
        log.info("Twilio call answered with a stream", call_id=record.id, call_sid=call_sid, agent=agent.key)
        return twiml.connect_stream(stream_url, {"call_id": record.id, "token": token.secret}), record.id

    def _refuse(self, call_sid: str, called: str, refusal: Refusal) -> Refused:
        log.warning("Twilio call refused", call_sid=call_sid, called=called, code=refusal.code,
                    reason=refusal.reason)
        return Refused(refusal.reason, twiml.reject("busy" if refusal.code in (486, 503) else "rejected"))

    def _live_pairs(self) -> list[tuple[str | None, str]]:
        ours: list[tuple[str | None, str]] = [(TRUNK, lc.agent) for lc in self.live.values()]
        return ours + (self._live_elsewhere() if self._live_elsewhere else [])

    async def _ask_webhook(self, form: dict[str, str], decision: Any) -> Any:
        url = self.settings.incoming_call_webhook_url
        if not url:
            return decision
        body = {"type": "call.incoming", "channel": "twilio", "from": form.get("From"), "to": form.get("To"),
                "trunk": TRUNK, "call_sid": form.get("CallSid"), "agent": decision.agent,
                "caller_name": form.get("CallerName")}
        try:
            resp = await self._http.post(url, json=body, timeout=self.settings.incoming_call_webhook_timeout_s)
            resp.raise_for_status()
            answer = resp.json()
        except Exception as exc:  # noqa: BLE001 - the rule decides
            log.warning("incoming-call webhook gave no usable answer; the dispatch rule decides",
                        url=url, error=str(exc) or type(exc).__name__)
            return decision
        return apply_webhook_answer(answer, decision, TRUNK)

    # --- the stream --------------------------------------------------------------------------------

    async def run_stream(self, ws: StreamSocket) -> None:
        """Serve one accepted Media Streams WebSocket until the call ends."""
        try:
            start = await asyncio.wait_for(self._read_start(ws), timeout=START_TIMEOUT_S)
        except asyncio.TimeoutError:
            await self._close(ws, CLOSE_REFUSED, "no start message within 10 s")
            return
        except protocol.ProtocolError as exc:
            await self._close(ws, CLOSE_BAD_INPUT, str(exc))
            return
        except Exception:  # noqa: BLE001 - the peer went away before start
            return
        if start is None:
            return
        admitted = await self._admit(start)
        if isinstance(admitted, str):
            await self._close(ws, CLOSE_REFUSED, admitted, call_sid=start.call_sid)
            return
        record, live = admitted
        if live.channel is not None:  # the stream reconnected after touch-tones
            released = live.channel.attach(ws, start.stream_sid)
            log.info("Twilio stream reconnected", call_id=record.id, stream_sid=start.stream_sid)
            reader = asyncio.create_task(self._read(ws, live.channel), name=f"twilio-read-{record.id}")
            await released
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            return
        channel = TwilioChannel(ws, start.stream_sid, start.call_sid or record.external_id or "",
                                actions=CallRest(self, record.id) if self.rest is not None else None)
        live.channel = channel
        if not live.answered.done():
            live.answered.set_result(None)
        reader = asyncio.create_task(self._read(ws, channel), name=f"twilio-read-{record.id}")
        try:
            with bind_call(record.id, direction=record.direction):
                outcome = await self._converse(record, channel)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await channel.aclose()
            await self._close(ws, 1000, None)
            log.info("Twilio stream ended", call_id=record.id, call_sid=channel.call_sid,
                     reason=channel.end_reason, frames_out=channel.frames_out, late_frames=channel.late_frames,
                     marks=channel.marks_sent)
            if record.direction == "inbound":
                self.live.pop(record.id, None)  # outbound: `place_call` drops it
        if outcome.reason.startswith("stream_error"):
            outcome = DialOutcome("failed", outcome.reason)
        if record.direction == "inbound":
            await self.calls.end(record.id, outcome)
        elif not live.done.done():
            live.done.set_result(outcome)

    async def _read_start(self, ws: StreamSocket) -> protocol.Start | None:
        """Messages up to `start` (`connected` may come first)."""
        while True:
            msg = protocol.parse(await ws.receive_text())
            if isinstance(msg, protocol.Start):
                return msg
            if not isinstance(msg, protocol.Connected):
                raise protocol.ProtocolError(f"'{type(msg).__name__.lower()}' message before 'start'")

    async def _admit(self, start: protocol.Start) -> tuple[CallRecord, LiveStream] | str:
        """The call record this stream belongs to, moved to in_progress (which uses the token up), or why not."""
        call_id = start.parameters.get("call_id", "")
        record = await self.calls.get_call(call_id) if call_id else None
        if record is None or record.channel != "twilio":
            return f"stream for unknown call {call_id[:40]!r}"
        meta = record.metadata.get("twilio") or {}
        if start.parameters.get("resume") == "1":
            return self._admit_resume(record, start, meta if isinstance(meta, dict) else {})
        problem = tokens.check(start.parameters.get("token"), meta if isinstance(meta, dict) else {})
        if problem is None and record.status not in ("ringing", "dialing"):
            problem = f"the stream token was already used (call is {record.status})"
        if problem is None and record.external_id and start.call_sid and start.call_sid != record.external_id:
            problem = f"stream CallSid {start.call_sid} is not the call's {record.external_id}"
        if problem is not None:
            return f"call {record.id}: {problem}"
        try:
            record = await self.calls.transition(record.id, "in_progress", reason="Twilio stream started",
                                                 data={"stream_sid": start.stream_sid})
        except IllegalTransition as exc:
            return f"call {record.id}: the stream token was already used ({exc.current})"
        live = self.live.get(record.id)
        if live is None:
            live = LiveStream(record.id, record.agent, record.direction)
            self.live[record.id] = live
        return record, live

    def _admit_resume(self, record: CallRecord, start: protocol.Start,
                      meta: dict[str, Any]) -> tuple[CallRecord, LiveStream] | str:
        """A stream reconnecting after touch-tones: the resume token, once, while the call waits for it."""
        live = self.live.get(record.id)
        pending = live.resume_digest if live is not None else None
        problem = tokens.check(start.parameters.get("token"), {"token_sha256": pending or "",
                                                                "token_expires_at": meta.get("resume_expires_at")})
        if problem is None and (live is None or live.channel is None or not live.channel.resuming):
            problem = "no stream reconnect is expected for this call"
        if problem is not None or live is None:
            return f"call {record.id}: reconnect refused: {problem}"
        live.resume_digest = None  # used up
        return record, live

    async def play_digits(self, call_id: str, call_sid: str, digits: str) -> bool:
        """`<Play digits>` on the call, then `<Connect><Stream>` again with a fresh single-use token."""
        live = self.live.get(call_id)
        record = await self.calls.get_call(call_id)
        if self.rest is None or live is None or record is None:
            return False
        meta = dict(record.metadata or {})
        twilio_meta = dict(meta.get("twilio") or {})
        stream_url = str(twilio_meta.get("stream_url") or "")
        if not stream_url:
            return False
        token = tokens.new_token(self.config.token_ttl_s)
        live.resume_digest = token.digest
        twilio_meta["resume_expires_at"] = token.expires_at
        meta["twilio"] = twilio_meta
        await self.calls.update(call_id, meta=meta)
        answer = twiml.connect_stream(stream_url, {"call_id": call_id, "token": token.secret, "resume": "1"},
                                      play_digits=_twilio_digits(digits))
        try:
            await self.rest.update_twiml(call_sid, answer)
        except TwilioError as exc:
            live.resume_digest = None
            log.warning("Twilio refused the touch-tones; playing them in-band", call_sid=call_sid, error=str(exc))
            return False
        await self.calls.add_event(call_id, "twilio.dtmf_out", {"digits": digits})
        return True

    async def _read(self, ws: StreamSocket, channel: TwilioChannel) -> None:
        """Twilio's messages into the channel until `stop`, a closed socket or bad input."""
        while not channel.closed:
            try:
                text = await ws.receive_text()
            except Exception:  # noqa: BLE001 - disconnect (Starlette raises on a closed socket)
                if not channel.resuming:
                    channel.end("stream_closed")
                return
            try:
                msg = protocol.parse(text)
                if isinstance(msg, protocol.Media):
                    if msg.track not in ("inbound", "inbound_track"):
                        continue
                    channel.feed_media(msg.payload, msg.timestamp_ms)
                elif isinstance(msg, protocol.Dtmf):
                    channel.feed_dtmf(msg.digit)
                elif isinstance(msg, protocol.Mark):
                    channel.feed_mark(msg.name)
                elif isinstance(msg, protocol.Stop):
                    if not channel.resuming:  # a stop for the touch-tones' new TwiML ends nothing
                        channel.end("caller_hangup")
                    return
                else:
                    raise protocol.ProtocolError(f"a second '{type(msg).__name__.lower()}' message mid-stream")
            except protocol.ProtocolError as exc:
                channel.end(f"stream_error: {exc}")
                await self._close(ws, CLOSE_BAD_INPUT, str(exc), call_sid=channel.call_sid)
                return

    async def _close(self, ws: StreamSocket, code: int, reason: str | None, call_sid: str | None = None) -> None:
        if reason:
            log.warning("Twilio stream closed", code=code, reason=reason, call_sid=call_sid)
        try:
            await ws.close(code, (reason or "")[:120])
        except Exception:  # noqa: BLE001 - already closed
            pass

    async def _converse(self, record: CallRecord, channel: TwilioChannel) -> DialOutcome:
        """Run the agent until the call ends; everything stored; returns how it ended."""
        agent = self.agents.get(record.agent)
        direction: Literal["inbound", "outbound"] = "outbound" if record.direction == "outbound" else "inbound"
        variables = dict(record.variables or {})
        if record.caller_name:
            variables = {"caller_name": record.caller_name, **variables}
        writer = CallEventWriter(self.calls, record.id)
        recorder = Recorder(Path(self.settings.data_dir) / "recordings" / f"{record.id}.wav", 8000) \
            if agent.spec.recording else None
        reason, status = "failed", "completed"
        try:
            engines = await self.engines(agent)
            conversation = engines.conversation(
                channel, direction=direction, variables=variables, on_event=writer,
                system_prompt=record.llm_prompt or None, greeting=record.greeting)
            reason = await run_recorded(conversation, channel, writer, agent.spec.max_duration_s)
        except Exception as exc:
            log.exception("conversation failed", call_id=record.id)
            reason, status = f"conversation error: {exc}", "failed"
        finally:
            if not channel.closed:
                await channel.hangup(reason)
            await writer.close()
            if recorder is not None:
                await self.calls.set_recording(record.id, recorder.close())
        return DialOutcome(status, reason)

    # --- status callbacks --------------------------------------------------------------------------

    async def on_status(self, form: dict[str, str]) -> str:
        """A signed status callback: note it on the call's timeline and move the call's state. Returns what
        was done, in words."""
        call_sid = form.get("CallSid", "")
        found, _ = await self.calls.list_calls(external_id=call_sid, limit=1) if call_sid else ([], None)
        if not found:
            return f"no call with CallSid {call_sid!r}"
        record = found[0]
        twilio_status = form.get("CallStatus", "")
        await self.calls.add_event(record.id, "twilio.status", {
            k: form[k] for k in ("CallStatus", "CallDuration", "AnsweredBy", "SipResponseCode", "Timestamp")
            if k in form})
        change = map_status(twilio_status, answered_by=form.get("AnsweredBy"),
                            sip_code=form.get("SipResponseCode"), duration=form.get("CallDuration"))
        if change is None:
            return f"call {record.id}: {twilio_status or 'no status'} noted"
        live = self.live.get(record.id)
        if change.status in TERMINAL:
            if live is not None and live.channel is not None:
                if not live.channel.closed:
                    live.channel.end("caller_hangup" if change.status == "completed" else change.status)
                return f"call {record.id}: stream ended ({change.reason})"
            if live is not None and record.direction == "outbound":
                if not live.answered.done():
                    live.answered.set_result(DialOutcome(change.status, change.reason, None))
                return f"call {record.id}: {change.status} before its stream"
            if record.status not in TERMINAL and record.direction == "inbound":
                await self.calls.end(record.id, DialOutcome(change.status, change.reason))
                return f"call {record.id}: {change.status}"
            return f"call {record.id}: already {record.status}"
        if change.status == "ringing" and record.status == "dialing":
            await self.calls.transition(record.id, "ringing", reason=change.reason)
            return f"call {record.id}: ringing"
        return f"call {record.id}: {twilio_status} noted"

    # --- outbound ----------------------------------------------------------------------------------

    async def place_call(self, record: CallRecord) -> DialOutcome:
        """The dialer's `place_call` for calls on the `twilio` trunk: create, wait for the stream, converse."""
        if self.rest is None:
            return DialOutcome("failed", "Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        base = self.config.public_url
        if not base:
            return DialOutcome("failed", "TWILIO_PUBLIC_URL (or PUBLIC_URL) is not set: Twilio cannot reach "
                                         "Parley's stream endpoint")
        from_number = record.from_number or self.config.phone_number
        if not from_number:
            return DialOutcome("failed", "no caller ID: set TWILIO_PHONE_NUMBER or from_number")
        token = tokens.new_token(max(self.config.token_ttl_s, self.settings.ring_timeout_s + 30))
        meta = dict(record.metadata or {})
        given = meta.get("twilio")
        options: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        stream_url = self.config.stream_url(base)
        meta["twilio"] = {**options, "stream_url": stream_url, **token.stored()}
        await self.calls.update(record.id, meta=meta, channel="twilio", trunk=TRUNK)
        live = LiveStream(record.id, record.agent, "outbound")
        self.live[record.id] = live
        try:
            try:
                sid = await self.rest.create_call(
                    to=record.to_number or "", from_=from_number,
                    twiml_text=twiml.connect_stream(stream_url, {"call_id": record.id, "token": token.secret}),
                    status_callback=f"{base}{STATUS_PATH}", options=options)
            except TwilioError as exc:
                return DialOutcome("failed", str(exc))
            await self.calls.update(record.id, external_id=sid)
            log.info("Twilio call placed", call_id=record.id, call_sid=sid)
            try:
                early = await asyncio.wait_for(asyncio.shield(live.answered),
                                               timeout=self.settings.ring_timeout_s + 15)
            except asyncio.TimeoutError:
                await self._hangup_quietly(sid)
                return DialOutcome("no_answer", "no stream from Twilio in time", None)
            if early is not None:
                return early
            return await live.done
        except asyncio.CancelledError:
            if live.channel is not None:
                await live.channel.hangup("canceled")
            raise
        finally:
            self.live.pop(record.id, None)

    async def _hangup_quietly(self, call_sid: str) -> None:
        if self.rest is None:
            return
        try:
            await self.rest.hangup(call_sid)
        except TwilioError as exc:
            log.warning("could not hang up the Twilio call", call_sid=call_sid, error=str(exc))

    def counts(self) -> int:
        return sum(1 for lc in self.live.values() if lc.channel is not None)


def _twilio_digits(digits: str) -> str:
    """Digits for `<Play digits>`: 0-9 * # and `w` (half a second); our `,` pause becomes `w`."""
    return "".join("w" if d == "," else d for d in digits if d in "0123456789*#w,")


class CallRest:
    """One call's `CallActions`: hang-up and transfer through the REST API, touch-tones with a reconnect."""

    def __init__(self, bridge: TwilioBridge, call_id: str) -> None:
        self.bridge = bridge
        self.call_id = call_id

    async def hangup(self, call_sid: str) -> None:
        assert self.bridge.rest is not None
        await self.bridge.rest.hangup(call_sid)

    async def transfer(self, call_sid: str, target: str) -> bool:
        assert self.bridge.rest is not None
        return await self.bridge.rest.transfer(call_sid, target)

    async def play_digits(self, call_sid: str, digits: str) -> bool:
        return await self.bridge.play_digits(self.call_id, call_sid, digits)
