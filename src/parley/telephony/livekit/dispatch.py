"""Which agent answers in a LiveKit room, and who in the room is the caller. Pure decisions with reasons.

The agent, first match wins:
1. the participant attribute `parley.agent` (what `parley livekit sip ensure` puts on LiveKit dispatch rules),
2. `agent` in the participant's metadata (JSON), then in the room's metadata (JSON): set by the web app that
   made the room or minted the caller's token,
3. for a SIP participant, Parley's dispatch rules on the called number (`sip.trunkPhoneNumber`),
4. a room named `parley-<agent>-…` (the room prefix of Parley's LiveKit dispatch rules),
5. the default agent, for explicit dispatch only: a webhook about a room where nothing of the above asks for
   a Parley agent is ignored (Parley stays out of the team's other rooms).
`variables` (JSON object) in room then participant metadata, then the rule's, are the conversation's variables.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.telephony.admission import Refusal, route
from parley.telephony.trunks import DispatchRule

AGENT_ATTRIBUTE = "parley.agent"
ROOM_PREFIX = "parley-"
#: LiveKit SIP's participant attributes.
SIP_CALL_ID = "sip.callID"
SIP_PHONE = "sip.phoneNumber"  # the caller's number
SIP_TRUNK_PHONE = "sip.trunkPhoneNumber"  # the number called
SIP_TRUNK_ID = "sip.trunkID"
KIND_SIP = 3  # livekit.protocol.models.ParticipantInfo.Kind.SIP
KIND_AGENT = 4


@dataclass(frozen=True)
class Participant:
    """What the decisions need to know about a room participant (from the SDK, a webhook or the API)."""

    identity: str
    kind: int = 0
    metadata: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_sip(self) -> bool:
        return self.kind == KIND_SIP or SIP_CALL_ID in self.attributes


@dataclass(frozen=True)
class Choice:
    """The agent for a room session, its variables, and why (in words)."""

    agent: str
    variables: dict[str, Any]
    reason: str


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def choose_agent(room: str, room_metadata: str, caller: Participant, *, rules: list[DispatchRule],
                 agents: Collection[str], default_agent: str | None) -> Choice | Refusal | None:
    """The agent for `caller` in `room`; a `Refusal` when what was asked for is not an agent here. With
    `default_agent` None, None when nothing asks for a Parley agent (a room Parley should stay out of)."""
    room_meta, part_meta = _json(room_metadata), _json(caller.metadata)
    variables: dict[str, Any] = {}
    for meta in (room_meta, part_meta):
        if isinstance(meta.get("variables"), dict):
            variables.update(meta["variables"])
    candidates: list[tuple[str, str]] = []
    if caller.attributes.get(AGENT_ATTRIBUTE):
        candidates.append((caller.attributes[AGENT_ATTRIBUTE], f"participant attribute {AGENT_ATTRIBUTE}"))
    for meta, where in ((part_meta, "participant metadata"), (room_meta, "room metadata")):
        if isinstance(meta.get("agent"), str) and meta["agent"]:
            candidates.append((meta["agent"], f"{where} agent"))
    if candidates:
        agent, why = candidates[0]
        if agent not in agents:
            return Refusal(404, f"{why} asks for agent {agent!r}, which is not one of {', '.join(sorted(agents))}")
        return Choice(agent, variables, why)
    called = caller.attributes.get(SIP_TRUNK_PHONE, "")
    if caller.is_sip and called and rules:
        decision = route(rules, called, None, default_agent or "")
        if isinstance(decision, Refusal):
            return decision
        return Choice(decision.agent, {**decision.variables, **variables},
                      f"dispatch rule {decision.rule!r} for called number {called}")
    if room.startswith(ROOM_PREFIX):
        for agent in sorted(agents, key=len, reverse=True):
            if room.startswith(f"{ROOM_PREFIX}{agent}-"):
                return Choice(agent, variables, f"room name prefix {ROOM_PREFIX}{agent}-")
    if default_agent is None:
        return None
    return Choice(default_agent, variables, "default agent")


def pick_caller(participants: list[Participant], wanted: str | None = None) -> Participant | None:
    """The participant the agent talks to: `wanted` if given, else a SIP participant, else the first one that
    is not an agent (Parley's own or another framework's)."""
    if wanted:
        return next((p for p in participants if p.identity == wanted), None)
    others = [p for p in participants if p.kind != KIND_AGENT and not p.identity.startswith("parley-agent")]
    return next((p for p in others if p.is_sip), others[0] if others else None)
