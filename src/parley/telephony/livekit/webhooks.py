"""LiveKit webhooks: verify with the SDK's `WebhookReceiver`, then start or end room sessions.

LiveKit signs each webhook with a JWT in `Authorization` (HS256 with the API secret, `iss` = the API key,
an `exp`, and a `sha256` claim of the body). No header, a wrong signature, another key, a body that does not
match the hash, or an expired token (a replay, or a clock far off) → `WebhookRejected` (the API answers 401).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parley.logging import get_logger
from parley.telephony.livekit.config import LiveKitConfig
from parley.telephony.livekit.dispatch import KIND_AGENT, Participant
from parley.telephony.livekit.sessions import NotForParley, RoomSessions, SessionRefused

if TYPE_CHECKING:
    from livekit.protocol.webhook import WebhookEvent

log = get_logger(__name__)


class WebhookRejected(Exception):
    """The webhook is not from the configured LiveKit server (or is stale); the message says why."""


def verify(config: LiveKitConfig, body: str, authorization: str | None) -> WebhookEvent:
    """The event, once its signature, key, body hash and age check out; `WebhookRejected` otherwise."""
    import jwt
    from livekit import api as lk

    if not authorization:
        raise WebhookRejected("no Authorization header: LiveKit signs every webhook")
    token = authorization.removeprefix("Bearer ").strip()
    receiver = lk.WebhookReceiver(lk.TokenVerifier(config.key, config.secret))
    try:
        return receiver.receive(body, token)
    except jwt.ExpiredSignatureError:
        raise WebhookRejected("the signature has expired (a stale or replayed webhook)") from None
    except jwt.InvalidIssuerError:
        raise WebhookRejected(f"signed for another API key (expected {config.key!r})") from None
    except jwt.PyJWTError as exc:
        raise WebhookRejected(f"invalid signature: {exc}") from None
    except Exception as exc:  # the SDK raises plain Exception for a hash mismatch, ParseError for bad JSON
        raise WebhookRejected(f"rejected: {exc}") from None


def _participant(event: WebhookEvent) -> Participant:
    p = event.participant
    return Participant(p.identity, int(p.kind), p.metadata, dict(p.attributes))


def is_ours(p: Participant) -> bool:
    """Parley's own agent participant (or another agent framework's): never a caller."""
    return p.kind == KIND_AGENT or p.identity.startswith("parley-agent")


async def handle(sessions: RoomSessions | None, event: WebhookEvent) -> dict[str, Any]:
    """Act on a verified event; returns what was done, in words, for the response and the log."""
    kind, room = event.event, event.room.name
    if kind == "participant_joined":
        who = _participant(event)
        if is_ours(who):
            return {"event": kind, "action": "ignored", "reason": "an agent participant"}
        if who.attributes.get("parley.call_id"):
            return {"event": kind, "action": "ignored",
                    "reason": f"the callee of Parley's outbound call {who.attributes['parley.call_id']}"}
        if sessions is None:
            return {"event": kind, "action": "ignored", "reason": "room sessions are not running here"}
        try:
            session = await sessions.start(room, caller=who, room_metadata=event.room.metadata)
        except NotForParley as exc:
            return {"event": kind, "action": "ignored", "reason": str(exc)}
        except SessionRefused as exc:
            log.warning("LiveKit participant not answered", room=room, participant=who.identity, reason=str(exc))
            return {"event": kind, "action": "refused", "reason": str(exc)}
        return {"event": kind, "action": "session", "call_id": session.call_id, "agent": session.agent}
    if kind == "participant_left" and sessions is not None:
        await sessions.on_participant_left(room, event.participant.identity)
        return {"event": kind, "action": "noted"}
    if kind == "room_finished" and sessions is not None:
        await sessions.on_room_finished(room)
        return {"event": kind, "action": "noted"}
    return {"event": kind, "action": "ignored"}
