"""Outbound calls through LiveKit SIP: `POST /api/outbound-call` with `"trunk": "livekit:<name>"`.

The dialer hands such a call to `LiveKitDialer.place_call` (`routed()` sends the others to the SIP gateway):
it finds the LiveKit outbound trunk `<name>` that `parley livekit sip ensure` made, asks LiveKit to dial
(`CreateSIPParticipant`, waiting until answered) into a new room `parley-<agent>-<call id>`, records LiveKit's
SIP call id, then joins the room as the agent and runs the conversation like any room session.
The From user is the trunk's (the SIP username for `from_user: username` carriers), else the call's
`from_number` or the trunk's number. SIP failures map to busy / no_answer / failed in words.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from parley.calls.outcomes import DialOutcome
from parley.calls.records import Call as CallRecord
from parley.logging import bind_call, get_logger
from parley.telephony.gateway import BUSY, NO_ANSWER, describe_failure
from parley.telephony.livekit.sessions import CHANNEL, RoomSession, RoomSessions

if TYPE_CHECKING:
    from parley.calls.dialer import PlaceCall

log = get_logger(__name__)

PREFIX = "livekit:"


def is_livekit(trunk: str | None) -> bool:
    """True for a call meant to go out through LiveKit SIP."""
    return bool(trunk and trunk.startswith(PREFIX))


def from_user(trunk_numbers: list[str], trunk_metadata: str, from_number: str | None) -> str:
    """The From user for CreateSIPParticipant's `sip_number`: a username-From trunk keeps its username,
    else the call's own number, else the trunk's number."""
    try:
        caller_id = json.loads(trunk_metadata or "{}").get("caller_id")
    except ValueError:
        caller_id = None
    first = trunk_numbers[0] if trunk_numbers else ""
    username_from = bool(first) and not first.startswith("+") and caller_id is not None and first != caller_id
    if username_from:
        return first
    return from_number or first


class LiveKitDialer:
    """Places `livekit:` calls for the dialer, using the room sessions' config, calls service and engines."""

    def __init__(self, sessions: RoomSessions) -> None:
        self.sessions = sessions

    def routed(self, other: PlaceCall) -> PlaceCall:
        """A `place_call` that sends `livekit:` calls here and every other call to `other`."""

        async def place(record: CallRecord) -> DialOutcome:
            if is_livekit(record.trunk):
                return await self.place_call(record)
            return await other(record)

        return place

    async def place_call(self, record: CallRecord) -> DialOutcome:
        """Dial through LiveKit SIP, converse in the room, report how it ended."""
        with bind_call(record.id, direction="outbound"):
            return await self._place(record)

    async def _place(self, record: CallRecord) -> DialOutcome:
        from livekit.api import ServerError, SipCallError
        from livekit.protocol import sip as lksip

        from parley.telephony.livekit.doctor import explain

        config, calls = self.sessions.config, self.sessions.calls
        name = (record.trunk or "").removeprefix(PREFIX)
        room = f"parley-{record.agent}-{record.id}"[:128]
        identity = f"sip-{record.to_number}"
        client = config.api()
        try:
            trunks = (await client.sip.list_outbound_trunk(lksip.ListSIPOutboundTrunkRequest())).items
            trunk = next((t for t in trunks if t.name == name), None)
            if trunk is None:
                return DialOutcome("failed", f"LiveKit has no outbound trunk named {name!r}: push Parley's trunks "
                                             "with `parley livekit sip ensure`")
            await calls.update(record.id, meta={**(record.metadata or {}), "channel": CHANNEL, "livekit": {
                "room": room, "participant": identity, "trunk": name, "trunk_id": trunk.sip_trunk_id}})
            await calls.transition(record.id, "ringing")
            info = await client.sip.create_sip_participant(lksip.CreateSIPParticipantRequest(
                sip_trunk_id=trunk.sip_trunk_id, sip_call_to=record.to_number or "",
                sip_number=from_user(list(trunk.numbers), trunk.metadata, record.from_number),
                room_name=room, participant_identity=identity, participant_name=record.caller_name or "",
                participant_attributes={"parley.call_id": record.id, "parley.agent": record.agent},
                wait_until_answered=True, play_dialtone=False))
        except SipCallError as exc:
            code = exc.sip_status_code
            if code is None:
                return DialOutcome("failed", explain(exc, config))
            text = describe_failure(code, exc.sip_status or "", f"livekit:{name}")
            status = "busy" if code in BUSY else "no_answer" if code in NO_ANSWER else "failed"
            return DialOutcome(status, text)
        except ServerError as exc:
            return DialOutcome("failed", explain(exc, config))
        except Exception as exc:
            return DialOutcome("failed", explain(exc, config))
        finally:
            await client.aclose()
        await calls.update(record.id, sip_call_id=info.sip_call_id)
        await calls.add_event(record.id, "livekit.answered", {"room": room, "participant": identity,
                                                               "sip_call_id": info.sip_call_id})
        session = RoomSession(record.id, room, identity, record.agent)
        outcome = await self.sessions.run_answered(session, dict(record.variables or {}),
                                                   llm_prompt=record.llm_prompt, greeting=record.greeting)
        return DialOutcome(outcome.status, outcome.reason, info.sip_call_id)
