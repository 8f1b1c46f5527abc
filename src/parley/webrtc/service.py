"""Browser calls: an SDP offer in, an SDP answer out, then the agent over a `WebRtcChannel`.

`WebRtcCalls.offer(...)` checks the offer (`sdp.check_offer`), the agent and capacity (the same
`check_capacity` as SIP calls, counted over one live-call table shared with the SIP gateway when one
runs), answers with every ICE candidate gathered (no trickle), records the call (`channel: webrtc`,
inbound) and starts it. The call then waits for ICE/DTLS to connect, runs the conversation with the
same event writer, recording and outcomes as a phone call, and ends when the browser closes its peer
connection, `end(call_id)` is called (DELETE /api/webrtc/calls/{id}), the call is canceled, or the agent
hangs up. Every refusal is a `SignallingError` with an HTTP status, the field and a reason in words.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from parley.agents import Agent, AgentRegistry
from parley.calls.outcomes import DialOutcome
from parley.calls.service import CallsService
from parley.engine.events import Event
from parley.engine.session import Engines
from parley.logging import bind_call, get_logger
from parley.settings import Settings
from parley.support.taskset import TaskSet
from parley.telephony.admission import check_capacity
from parley.telephony.conversation_run import run_recorded
from parley.telephony.event_writer import CallEventWriter
from parley.telephony.gateway import Gateway, LiveCall
from parley.telephony.recording import Recorder
from parley.webrtc.channel import WebRtcChannel, shorten_jitter_buffer
from parley.webrtc.ice import (
    add_public_candidates,
    configuration,
    host_addresses,
    local_addresses,
    validate_ice_settings,
)
from parley.webrtc.relay import LABEL, EventRelay
from parley.webrtc.sdp import check_offer

log = get_logger(__name__)

EnginesFor = Callable[[Agent], Awaitable[Engines]]


class SignallingError(Exception):
    """An offer that cannot be answered: HTTP `status`, error `code`, the `field` at fault, and why."""

    def __init__(self, status: int, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Answer:
    """What the page sets as its remote description."""

    call_id: str
    sdp: str
    type: str = "answer"


@dataclass
class BrowserCall:
    """One live browser call."""

    call_id: str
    agent: str
    pc: RTCPeerConnection
    channel: WebRtcChannel
    relay: EventRelay
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    slot: str = ""  #: the holder of its capacity slot (the gateway's, when one runs)


class WebRtcCalls:
    """Runs browser calls for the API. `live_table()` is the process's table of live calls (the SIP
    gateway's when one runs, so NUM_AGENTS and the agents' caps count both kinds of calls)."""

    def __init__(self, settings: Settings, agents: AgentRegistry, calls: CallsService, *,
                 engines: EnginesFor, live_table: Callable[[], dict[str, Any] | None] | None = None,
                 gateway: Callable[[], Gateway | None] | None = None) -> None:
        self.settings = settings
        self._gateway = gateway or (lambda: None)
        self.agents = agents
        self.calls = calls
        self.engines = engines
        self._shared = live_table
        self._own_live: dict[str, Any] = {}
        self.browser_calls: dict[str, BrowserCall] = {}
        self._tasks = TaskSet("webrtc")
        self._addresses = local_addresses(settings)
        self._closing = False

    @property
    def live(self) -> dict[str, Any]:
        """The live-call table admission counts (shared with the SIP gateway when there is one)."""
        shared = self._shared() if self._shared is not None else None
        return shared if shared is not None else self._own_live

    def start(self) -> None:
        """Listen for cancels; log the ICE settings in use (and any that make no sense, in words)."""
        self.calls.add_cancel_listener(self._on_cancel)
        for problem in validate_ice_settings(self.settings):
            log.warning("WebRTC setting ignored or invalid", problem=problem)
        log.info("browser calls ready", ice_addresses=self._addresses,
                 ice_servers=self.settings.webrtc_ice_servers or "none",
                 public_address=self.settings.webrtc_public_address or "none")

    async def close(self) -> None:
        """Hang up every browser call and wait for them to be recorded."""
        self._closing = True
        self.calls.remove_cancel_listener(self._on_cancel)
        for call in list(self.browser_calls.values()):
            await call.channel.hangup("server_shutdown")
        tasks = [c.task for c in self.browser_calls.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._tasks.cancel_all(timeout_s=5)

    # --- signalling --------------------------------------------------------------------------------

    async def offer(self, agent_name: str, sdp: str, type_: str = "offer", *,
                    variables: dict[str, Any] | None = None, client: str | None = None,
                    user_agent: str | None = None) -> Answer:
        """Answer a browser's offer and start the call; raises `SignallingError` when it cannot."""
        if type_ != "offer":
            raise SignallingError(400, "invalid_sdp", "type", f"must be 'offer', not {type_!r}")
        problem = check_offer(sdp)
        if problem is not None:
            raise SignallingError(400, "invalid_sdp", "sdp", f"the offer {problem.message}")
        try:
            agent = self.agents.get(agent_name)
        except KeyError as exc:
            raise SignallingError(404, "not_found", "agent", str(exc.args[0])) from None
        if self._closing:
            raise SignallingError(503, "unavailable", "agent", "the server is shutting down")
        live = self.live
        refusal = check_capacity(None, agent.key, agent.spec.max_concurrent_calls,
                                 [(lc.trunk, lc.agent) for lc in live.values()], self.settings.num_agents)
        if refusal is not None:
            status, code = (429, "busy") if refusal.code == 486 else (503, "over_capacity")
            raise SignallingError(status, code, "agent", refusal.reason)
        slot = f"webrtc-{uuid.uuid4().hex}"
        live[slot] = LiveCall(slot, None, None, agent.key, "inbound", None)  # held while we answer
        gateway = self._gateway()
        try:
            if gateway is not None:  # the SIP gateway's slots: the same caps, cluster-wide with Redis
                full = await gateway.admit_other(slot, agent)
                if full is not None:
                    status, code = (429, "busy") if full.code == 486 else (503, "over_capacity")
                    raise SignallingError(status, code, "agent", full.reason)
            return await self._answer(agent, sdp, dict(variables or {}), slot, live, client, user_agent)
        except BaseException:
            live.pop(slot, None)
            if gateway is not None:
                await gateway.release_other(slot)
            raise

    async def _answer(self, agent: Agent, sdp: str, variables: dict[str, Any], slot: str, live: dict[str, Any],
                      client: str | None, user_agent: str | None) -> Answer:
        recorder_box: list[Recorder] = []
        channel = WebRtcChannel()
        relay = EventRelay()
        pc = RTCPeerConnection(configuration(self.settings))
        connected = asyncio.Event()

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                channel.attach(track)

        @pc.on("datachannel")
        def on_datachannel(dc: Any) -> None:
            if dc.label == LABEL:
                relay.attach(dc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                connected.set()
            elif state == "failed":
                channel.connection_lost("connection_failed")
            elif state == "closed":
                channel.connection_lost("caller_hangup")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise SignallingError(400, "invalid_sdp", "sdp", "the offer has no usable audio m-line")
            pc.addTrack(channel.track)
            shorten_jitter_buffer(audio[0].receiver)
            opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
            audio[0].setCodecPreferences(opus)
            answer = await pc.createAnswer()
            with host_addresses(self._addresses):
                await pc.setLocalDescription(answer)
        except SignallingError:
            await _close_quietly(pc)
            raise
        except Exception as exc:
            await _close_quietly(pc)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise SignallingError(400, "invalid_sdp", "sdp", f"the offer could not be applied ({detail})") from None
        local = pc.localDescription
        answer_sdp = add_public_candidates(local.sdp, self.settings.webrtc_public_address)
        try:
            record = await self.calls.create_call(
                to_number="", agent=agent.key, direction="inbound", channel="webrtc", variables=variables,
                metadata={"webrtc": {"client": client, "user_agent": user_agent}},
            )
        except Exception:
            await _close_quietly(pc)
            raise
        if agent.spec.recording:
            path = Path(self.settings.data_dir) / "recordings" / f"{record.id}.wav"
            recorder_box.append(Recorder(path, channel.sample_rate))
            channel.attach_recorder(recorder_box[0])
        call = BrowserCall(record.id, agent.key, pc, channel, relay, connected, slot=slot)
        live.pop(slot, None)
        live[record.id] = LiveCall(record.id, None, None, agent.key, "inbound", None)
        self.browser_calls[record.id] = call
        call.task = self._tasks.spawn(self._run(call, agent, variables, live), name=f"webrtc-{record.id}")
        live[record.id].task = call.task
        log.info("browser call answered", call_id=record.id, agent=agent.key, client=client)
        return Answer(record.id, answer_sdp)

    async def end(self, call_id: str) -> bool:
        """Hang up a live browser call (the page's "End call"); False when there is no such live call."""
        call = self.browser_calls.get(call_id)
        if call is None:
            return False
        await call.channel.hangup("caller_hangup")
        return True

    def _on_cancel(self, call_id: str) -> None:
        call = self.browser_calls.get(call_id)
        if call is not None:
            self._tasks.spawn(call.channel.hangup("canceled"), name=f"webrtc-cancel-{call_id}")

    # --- the call ----------------------------------------------------------------------------------

    async def _run(self, call: BrowserCall, agent: Agent, variables: dict[str, Any], live: dict[str, Any]) -> None:
        outcome = DialOutcome("failed", "the call did not start")
        try:
            with bind_call(call.call_id, direction="inbound", channel="webrtc"):
                outcome = await self._connect_and_converse(call, agent, variables)
                await self.calls.end(call.call_id, outcome)
        except asyncio.CancelledError:
            await self.calls.end(call.call_id, DialOutcome("canceled", "canceled"))
            raise
        except Exception as exc:
            log.exception("browser call failed", call_id=call.call_id)
            await self.calls.end(call.call_id, DialOutcome("failed", f"browser call error: {exc}"))
        finally:
            call.relay.send({"type": "ended", "reason": call.channel.end_reason or outcome.reason})
            await asyncio.sleep(0.05)  # let the last data channel message leave before the close
            await call.channel.hangup(outcome.reason or "ended")
            await _close_quietly(call.pc)
            self.browser_calls.pop(call.call_id, None)
            live.pop(call.call_id, None)
            gateway = self._gateway()
            if gateway is not None:
                await gateway.release_other(call.slot)

    async def _connect_and_converse(self, call: BrowserCall, agent: Agent,
                                    variables: dict[str, Any]) -> DialOutcome:
        timeout = self.settings.webrtc_connect_timeout_s
        # the agent's engines load (first call of an agent under `parley api`) while ICE/DTLS connect
        engines = asyncio.ensure_future(self.engines(agent))
        try:
            return await self._connect(call, agent, variables, engines, timeout)
        finally:
            if not engines.done():
                engines.cancel()
            elif not engines.cancelled():
                engines.exception()  # retrieved: a failed build was reported by the conversation, or unused

    async def _connect(self, call: BrowserCall, agent: Agent, variables: dict[str, Any],
                       engines: asyncio.Future[Engines], timeout: float) -> DialOutcome:
        closed = asyncio.ensure_future(_closed(call.channel))
        connected = asyncio.ensure_future(call.connected.wait())
        try:
            await asyncio.wait({closed, connected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            connected.cancel()
        if not call.connected.is_set():
            if call.channel.end_reason in ("caller_hangup", "canceled"):
                why = f"{call.channel.end_reason} before the connection was established"
                await self.calls.add_event(call.call_id, "webrtc.closed", {"reason": why})
                return DialOutcome("canceled", why)
            why = (f"the browser's connection ended before it was established ({call.channel.end_reason})"
                   if call.channel.closed else
                   f"the browser's ICE/DTLS did not connect within {timeout:g} s (check WEBRTC_ICE_ADDRESSES, "
                   "WEBRTC_PUBLIC_ADDRESS or a TURN server in WEBRTC_ICE_SERVERS)")
            await self.calls.add_event(call.call_id, "webrtc.failed", {"reason": why})
            return DialOutcome("failed", why)
        await self.calls.add_event(call.call_id, "webrtc.connected", _connection_info(call.pc))
        await self.calls.transition(call.call_id, "in_progress")
        call.relay.send({"type": "state", "state": "connected"})
        return await self._converse(call, agent, variables, engines)

    async def _converse(self, call: BrowserCall, agent: Agent, variables: dict[str, Any],
                        engines_ready: asyncio.Future[Engines]) -> DialOutcome:
        writer = CallEventWriter(self.calls, call.call_id)

        def sink(event: Event) -> None:
            writer(event)
            call.relay(event)

        reason, status = "failed", "completed"
        try:
            engines = await engines_ready
            conversation = engines.conversation(call.channel, direction="inbound", variables=variables,
                                                on_event=sink)
            reason = await run_recorded(conversation, call.channel, writer, agent.spec.max_duration_s)
        except Exception as exc:
            log.exception("conversation failed", call_id=call.call_id)
            reason, status = f"conversation error: {exc}", "failed"
        finally:
            await call.channel.hangup(reason)
            writer.note("webrtc.closed", {"reason": call.channel.end_reason or reason,
                                          "frames_received": call.channel.frames_received,
                                          "frames_concealed": call.channel.frames_concealed})
            await writer.close()
            recorder = call.channel.recorder
            if recorder is not None:
                await self.calls.set_recording(call.call_id, recorder.close())
        return DialOutcome(status, reason)


async def _close_quietly(pc: RTCPeerConnection) -> None:
    """Close a peer connection; aiortc can fail closing one whose setup failed halfway (logged only)."""
    try:
        await pc.close()
    except Exception as exc:
        log.debug("closing a peer connection failed", error=str(exc) or type(exc).__name__)


async def _closed(channel: WebRtcChannel) -> None:
    await channel.wait_closed()


def _connection_info(pc: RTCPeerConnection) -> dict[str, Any]:
    """The selected ICE pair, for the timeline (best effort: aiortc keeps it in private attributes)."""
    info: dict[str, Any] = {"state": pc.connectionState}
    try:
        for t in pc.getTransceivers():
            ice = t.receiver.transport.transport
            pair = ice._connection._nominated.get(1)  # noqa: SLF001
            if pair is not None:
                info["local"] = f"{pair.local_candidate.host}:{pair.local_candidate.port}"
                info["remote"] = f"{pair.remote_candidate.host}:{pair.remote_candidate.port}"
                info["candidate_type"] = pair.remote_candidate.type
            break
    except Exception:
        pass
    return info
