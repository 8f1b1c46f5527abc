"""Running one call's conversation the same way on every transport (SIP, Twilio, LiveKit, WebRTC)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from parley.engine.channel import MediaChannel
from parley.engine.conversation import Conversation
from parley.providers.fallback import context_listener, listen_in_context
from parley.telephony.event_writer import CallEventWriter

#: A conversation may run this much past its agent's `max_duration_s` (its own timer ends it first).
GRACE_S = 30.0


async def run_recorded(conversation: Conversation, channel: MediaChannel, writer: CallEventWriter,
                       max_duration_s: float) -> str:
    """Run `conversation` to its end reason. Provider failovers go on the call's timeline; a call still
    running `GRACE_S` past `max_duration_s` is hung up with reason `max_duration`."""
    token = listen_in_context(lambda e: writer.note("provider_failover", {**asdict(e), "text": e.describe()}))
    try:
        return await asyncio.wait_for(conversation.run(), timeout=max_duration_s + GRACE_S)
    except asyncio.TimeoutError:
        await channel.hangup("max_duration")
        return "max_duration"
    finally:
        context_listener.reset(token)
