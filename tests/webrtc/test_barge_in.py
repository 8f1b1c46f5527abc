"""Barge-in from the browser: the caller speaks over the agent's greeting and the agent stops — the
page hears no more agent audio from shortly after the interruption until the agent answers what the
caller said, and the stored transcript marks the greeting as interrupted (as on the phone)."""

from __future__ import annotations

import time

import pytest

from tests.eventually import eventually
from tests.webrtc.peer import BrowserPeer

pytestmark = [pytest.mark.slow]


def _state_at(peer: BrowserPeer, state: str) -> float | None:
    return next((t for t, m in peer.timed_messages if m.get("type") == "state" and m.get("state") == state), None)


async def test_the_caller_speaking_over_the_agent_stops_it(web_server, speech48) -> None:  # type: ignore[no-untyped-def]
    web = await web_server()
    words = speech48("I want to cancel my appointment.")
    peer = BrowserPeer()
    async with web.client() as client:
        assert (await peer.call(client)).status_code == 200
        await eventually(lambda: peer.voiced_after(0) > 1.0, timeout_s=30, what="the greeting playing")
        assert not peer.transcripts("agent"), "the greeting ended before the caller could speak over it"
        spoke_at = time.monotonic()
        done_at = peer.mic.say(words)
        await eventually(lambda: _state_at(peer, "interrupted"), timeout_s=15, what="an 'interrupted' state")
        barge_at = _state_at(peer, "interrupted")
        assert barge_at is not None
        try:
            reply = await eventually(lambda: [t for t in peer.transcripts("agent") if "which day" in t.lower()],
                                     timeout_s=30, what="the answer to what the caller said")
        except AssertionError:
            detail = await web.state.calls.get(peer.call_id or "")
            raise AssertionError(f"no answer; page got {peer.messages}; timeline "
                                 f"{[(e.type, e.data) for e in detail.timeline] if detail else None}") from None
        assert reply
        await peer.close()
        call = await web.wait_status(peer.call_id or "", {"completed"})

    before = sum(0.02 for at, f in peer.heard if barge_at - 1.0 <= at <= barge_at and _loud(f))
    assert before > 0.1 and spoke_at < barge_at, "the agent was not audible right before the barge-in"
    # from just after the interruption until the caller finished speaking, the agent is silent
    quiet = sum(0.02 for at, f in peer.heard if barge_at + 0.2 <= at <= done_at and _loud(f))
    assert quiet <= 0.06, f"{quiet:.2f} s of agent audio after the barge-in"
    detail = await web.state.calls.get(call.id)
    assert detail is not None
    greeting = next(e for e in detail.transcript if e.role == "agent")
    assert greeting.metadata["interrupted"] is True and "parley" in greeting.text.lower()
    assert "reached parley dental. this is ava. how can i help" not in greeting.text.lower(), greeting.text
    kinds = [e.data["kind"] for e in detail.timeline if e.type == "interruption"]
    # the caller's words were known ~0.2 s after they stopped: the greeting was never resumed meanwhile
    # (a false-interruption timeout counted from the barge-in once resumed it as their long turn ended)
    assert kinds == ["barge_in"], kinds
    assert any("cancel" in e.text.lower() for e in detail.transcript if e.role == "caller")


def _loud(frame, threshold: float = 500.0) -> bool:  # type: ignore[no-untyped-def]
    import numpy as np

    return bool(frame.size and float(np.sqrt((frame.astype(np.float64) ** 2).mean())) > threshold)
