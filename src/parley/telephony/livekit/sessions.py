"""Room sessions: a Parley agent talking to one caller in one LiveKit room, kept as a call record.

`RoomSessions.start()` (from a webhook or `parley livekit join`) chooses the agent (`dispatch.py`), records
the call at once (`direction: inbound`, `trunk: livekit`, `sip_call_id` when the caller came in over LiveKit
SIP, and `metadata.channel = "livekit"` with the room, the participant identity, the SIP call id and why
this agent), then joins the room in the background and runs the conversation. A join that fails ends the
record `failed` with the reason in words; the caller leaving ends it `completed` (`caller_hangup`).
One session per (room, caller identity): a repeated webhook does not start a second one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from parley.agents import Agent, AgentRegistry
from parley.calls.outcomes import DialOutcome
from parley.calls.service import CallsService
from parley.engine.session import EngineCache, Engines
from parley.logging import bind_call, get_logger
from parley.settings import Settings
from parley.support.taskset import TaskSet
from parley.telephony.admission import Refusal
from parley.telephony.conversation_run import run_recorded
from parley.telephony.event_writer import CallEventWriter
from parley.telephony.livekit.config import LiveKitConfig
from parley.telephony.livekit.dispatch import SIP_CALL_ID, SIP_PHONE, SIP_TRUNK_PHONE, Participant, choose_agent
from parley.telephony.store import TelephonyStore

if TYPE_CHECKING:
    from parley.telephony.livekit.channel import RoomChannel

log = get_logger(__name__)

CHANNEL = "livekit"


@dataclass
class RoomSession:
    """A running session."""

    call_id: str
    room: str
    caller: str | None
    agent: str
    task: asyncio.Task[Any] | None = None
    channel: RoomChannel | None = None


class SessionRefused(Exception):
    """No session was started; the message says why."""


class NotForParley(SessionRefused):
    """Nothing in the room or the participant asks for a Parley agent."""


NOT_ASKED = ("nothing asks for a Parley agent here: no participant attribute parley.agent, no 'agent' in the "
             "participant's or room's metadata, no Parley dispatch rule for a SIP caller, and the room is not "
             "named parley-<agent>-…")


class RoomSessions:
    """Starts and tracks room sessions for one process (the API under `parley up`, or `parley livekit join`)."""

    def __init__(self, settings: Settings, agents: AgentRegistry, calls: CallsService, config: LiveKitConfig, *,
                 engines: Callable[[Agent], Awaitable[Engines]] | None = None, sample_rate: int = 16000,
                 join_timeout_s: float = 15.0, caller_timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.agents = agents
        self.calls = calls
        self.config = config
        self.sample_rate = sample_rate
        self.join_timeout_s = join_timeout_s
        self.caller_timeout_s = caller_timeout_s
        self.live: dict[tuple[str, str | None], RoomSession] = {}
        self._engines_fn = engines
        self._engines = EngineCache(settings)
        self._tasks = TaskSet("livekit-sessions")

    def use_engines(self, engines: Callable[[Agent], Awaitable[Engines]]) -> None:
        """Build agents' engines with `engines` (the SIP gateway's, under `parley up`: one set per process)."""
        self._engines_fn = engines

    async def engines(self, agent: Agent) -> Engines:
        """The agent's providers (built once per process, off the event loop)."""
        if self._engines_fn is not None:
            return await self._engines_fn(agent)
        return await self._engines.get(agent)

    # --- starting -----------------------------------------------------------------------------------

    async def start(self, room: str, *, caller: Participant | None = None, agent: str | None = None,
                    room_metadata: str = "", source: str = "webhook", default_agent: bool = False) -> RoomSession:
        """Record a session for `caller` (None: whoever joins first) in `room` and run it in the background.

        `agent` forces the agent (explicit dispatch); else `dispatch.choose_agent` decides, falling back to
        DEFAULT_AGENT only with `default_agent`. `SessionRefused` when the agent is unknown or no dispatch rule
        matches (`NotForParley` when nothing asks for an agent); an existing session for the same caller is
        returned as it is."""
        key = (room, caller.identity if caller else None)
        if key in self.live:
            return self.live[key]
        waiting = self.live.get((room, None))
        if waiting is not None and waiting.caller in (None, key[1]):
            return waiting  # an explicit dispatch to this room is waiting for (or has found) this caller
        who = caller or Participant(identity="")
        if agent is not None:
            if agent not in self.agents:
                raise SessionRefused(f"unknown agent {agent!r}; agents: {', '.join(a.key for a in self.agents)}")
            chosen_agent, variables, reason = self.agents.get(agent).key, {}, f"explicit dispatch ({source})"
        else:
            rules = await TelephonyStore(self.calls.store).rules()
            choice = choose_agent(room, room_metadata, who, rules=rules, agents=[a.key for a in self.agents],
                                  default_agent=self.settings.default_agent if default_agent else None)
            if choice is None:
                raise NotForParley(NOT_ASKED)
            if isinstance(choice, Refusal):
                raise SessionRefused(choice.reason)
            chosen_agent, variables, reason = choice.agent, choice.variables, choice.reason
        attrs = dict(who.attributes)
        sip_call_id = attrs.get(SIP_CALL_ID) or None
        record = await self.calls.create_call(
            to_number=attrs.get(SIP_TRUNK_PHONE) or room, from_number=attrs.get(SIP_PHONE) or who.identity or None,
            agent=chosen_agent, direction="inbound", variables=variables, trunk=CHANNEL, sip_call_id=sip_call_id,
            channel=CHANNEL,
            metadata={"channel": CHANNEL, "livekit": {
                "room": room, "participant": who.identity or None, "sip_call_id": sip_call_id,
                "participant_kind": "sip" if who.is_sip else "web" if who.identity else None,
                "agent_reason": reason, "source": source}},
        )
        session = RoomSession(record.id, room, who.identity or None, chosen_agent)
        self.live[key] = session
        session.task = self._tasks.spawn(self._run(session, variables, key), name=f"livekit-{record.id}")
        log.info("LiveKit room session started", call_id=record.id, room=room, participant=who.identity,
                 agent=chosen_agent, reason=reason, source=source)
        return session

    async def on_participant_left(self, room: str, identity: str) -> None:
        """The caller left before (or while) the agent joined: end that session."""
        session = self.live.get((room, identity))
        if session is None:
            return
        if session.channel is not None:
            return  # the channel sees the caller leave and ends the conversation itself
        if session.task is not None:
            session.task.cancel()

    async def on_room_finished(self, room: str) -> None:
        """The room closed: hang up every session in it."""
        for session in [s for s in self.live.values() if s.room == room]:
            if session.channel is not None:
                await session.channel.hangup("room_closed")
            elif session.task is not None:
                session.task.cancel()

    # --- running ------------------------------------------------------------------------------------

    async def _run(self, session: RoomSession, variables: dict[str, Any], key: tuple[str, str | None]) -> None:
        call_id = session.call_id
        try:
            with bind_call(call_id, direction="inbound"):
                try:
                    outcome = await self._join_and_converse(session, variables, direction="inbound")
                except asyncio.CancelledError:
                    if session.channel is None:
                        await self.calls.end(call_id, DialOutcome("canceled", "the caller left before the agent "
                                                                              "joined"))
                    else:
                        await self.calls.end(call_id, DialOutcome("canceled", "canceled"))
                    raise
                await self.calls.end(call_id, outcome)
        finally:
            self.live.pop(key, None)

    async def run_answered(self, session: RoomSession, variables: dict[str, Any], *, llm_prompt: str | None = None,
                           greeting: str | None = None) -> DialOutcome:
        """An outbound call LiveKit SIP has answered into `session.room`: join and converse; the dialer records
        the returned outcome."""
        key = (session.room, session.caller)
        self.live[key] = session
        try:
            return await self._join_and_converse(session, variables, direction="outbound", llm_prompt=llm_prompt,
                                                 greeting=greeting)
        finally:
            self.live.pop(key, None)

    async def _join_and_converse(self, session: RoomSession, variables: dict[str, Any], *,
                                 direction: Literal["inbound", "outbound"], llm_prompt: str | None = None,
                                 greeting: str | None = None) -> DialOutcome:
        from parley.telephony.livekit.channel import RoomChannel
        from parley.telephony.livekit.doctor import explain

        try:
            channel = await RoomChannel.join(self.config, session.room, timeout_s=self.join_timeout_s,
                                             sample_rate=self.sample_rate, caller_identity=session.caller)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = f"could not join LiveKit room {session.room!r}: {explain(exc, self.config)}"
            log.warning("LiveKit room session failed", call_id=session.call_id, reason=why)
            return DialOutcome("failed", why)
        session.channel = channel
        return await self._converse(session.call_id, channel, session, variables, direction, llm_prompt, greeting)

    async def _converse(self, call_id: str, channel: RoomChannel, session: RoomSession, variables: dict[str, Any],
                        direction: Literal["inbound", "outbound"], llm_prompt: str | None,
                        greeting: str | None) -> DialOutcome:
        writer = CallEventWriter(self.calls, call_id)
        try:
            caller = await channel.wait_for_caller(self.caller_timeout_s)
            if caller is None:
                return DialOutcome("no_answer", f"nobody to talk to joined room {session.room!r} in "
                                                f"{self.caller_timeout_s:.0f} s")
            if session.caller is None:
                session.caller = caller
                await self.calls.add_event(call_id, "livekit.caller", {"participant": caller})
            await self.calls.transition(call_id, "in_progress")
            agent = self.agents.get(session.agent)
            engines = await self.engines(agent)
            conversation = engines.conversation(channel, direction=direction, variables=variables, on_event=writer,
                                                system_prompt=llm_prompt or None, greeting=greeting)
            reason = await run_recorded(conversation, channel, writer, agent.spec.max_duration_s)
            return DialOutcome("completed", channel.end_reason or reason)
        except Exception as exc:
            log.exception("LiveKit conversation failed", call_id=call_id)
            return DialOutcome("failed", f"conversation error: {exc}")
        finally:
            if not channel.closed:
                await channel.hangup("agent_hangup")
            await writer.close()

    async def close(self) -> None:
        """Hang up every session and wait for them to be recorded."""
        for session in list(self.live.values()):
            if session.channel is not None and not session.channel.closed:
                await session.channel.hangup("shutdown")
        await self._tasks.cancel_all(timeout_s=5)
