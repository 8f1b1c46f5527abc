"""A browser call end to end: a real aiortc peer (the browser's part) signals over the API, hears the
greeting, asks a question in synthesised speech, and hangs up; the call goes through the calls service
like a phone call. Asserted on what a person and the dashboard would see: the agent's audio arrived,
the page got both sides' words on the `events` data channel, and the stored call is a `webrtc` call
with the transcript, the timeline and the latency marks."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from parley.agents import AgentRegistry
from tests.conftest import ROOT
from tests.eventually import eventually
from tests.webrtc.peer import BrowserPeer

pytestmark = [pytest.mark.slow]


async def test_a_browser_asks_and_the_agent_answers_and_the_call_is_recorded(web_server, speech48) -> None:  # type: ignore[no-untyped-def]
    web = await web_server()
    question = speech48("What are your opening hours?")
    peer = BrowserPeer()
    async with web.client() as client:
        r = await peer.call(client)
        assert r.status_code == 200, r.text
        call_id = peer.call_id
        assert call_id and r.json()["type"] == "answer"
        assert "a=candidate:" in r.json()["sdp"] and "127.0.0.1" in r.json()["sdp"]  # no trickle, loopback

        greeting = await eventually(lambda: peer.transcripts("agent"), timeout_s=30, what="the greeting")
        assert "parley dental" in greeting[0].lower()
        assert peer.voiced_after(0) > 1.0, "the greeting was not heard as audio"

        asked_at = time.monotonic()
        peer.mic.say(question)
        heard = await eventually(lambda: [t for t in peer.transcripts("caller") if "hour" in t.lower()],
                                 timeout_s=30, what="the caller's words on the page")
        reply = await eventually(lambda: [t for t in peer.transcripts("agent")[1:] if "monday" in t.lower()],
                                 timeout_s=30, what="the agent's reply on the page")
        assert heard and reply
        assert peer.voiced_after(asked_at) > 1.0, "the reply was not heard as audio"
        states = [m["state"] for m in peer.messages if m["type"] == "state"]
        assert "connected" in states and "thinking" in states and "speaking" in states, states

        await peer.close()  # the browser closes its peer connection: the call ends
        call = await web.wait_status(call_id, {"completed"})

    assert call.channel == "webrtc" and call.direction == "inbound" and call.agent == "receptionist"
    assert call.end_reason == "caller_hangup", call.end_reason
    detail = await web.state.calls.get(call_id)
    caller = " ".join(e.text for e in detail.transcript if e.role == "caller").lower()
    agent = " ".join(e.text for e in detail.transcript if e.role == "agent").lower()
    assert "opening hours" in caller, caller
    assert "monday" in agent and "parley dental" in agent, agent
    types = [e.type for e in detail.timeline]
    assert "webrtc.connected" in types and "webrtc.closed" in types, types
    connected = next(e.data for e in detail.timeline if e.type == "webrtc.connected")
    assert connected.get("local", "").startswith("127.0.0.1:") and connected["candidate_type"] == "host", connected
    marks = [e.data for e in detail.timeline if e.type == "turn_metrics"]
    assert marks and all(m.get("voice_to_voice_ms") for m in marks if m.get("stt_final_ms") is not None), marks
    answered = [m for m in marks if m.get("stt_final_ms") is not None]
    assert answered and answered[0]["first_frame_out_ms"] is not None, answered
    assert detail.call.to_dict()["channel"] == "webrtc"
    async with web.client() as client:  # and the list filters by it
        listed = (await client.get("/api/calls", params={"channel": "webrtc"})).json()["calls"]
        assert [c["id"] for c in listed] == [call_id]
        assert (await client.get("/api/calls", params={"channel": "sip"})).json()["calls"] == []


async def test_recording_webhooks_and_the_agent_ending_the_call(web_server, webhook_receiver, speech48,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    agents_dir = tmp_path / "agents"
    agents_dir.mkdir()
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec["recording"] = True
    (agents_dir / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    web = await web_server(registry=AgentRegistry.load(agents_dir, ROOT / "prompts"),
                           webhook_url=webhook_receiver.url)
    peer = BrowserPeer()
    async with web.client() as client:
        assert (await peer.call(client)).status_code == 200
        await eventually(lambda: peer.transcripts("agent"), timeout_s=30, what="the greeting")
        peer.mic.say(speech48("That's all, thank you. Goodbye."))
        call = await web.wait_status(peer.call_id or "", {"completed"}, timeout=40)
        await eventually(lambda: any(m["type"] == "ended" for m in peer.messages), timeout_s=5,
                         what="the 'ended' message")
        ended_msg = next(m for m in peer.messages if m["type"] == "ended")
        r = await client.get(f"/api/calls/{call.id}/recording")
        assert r.status_code == 200 and r.content[:4] == b"RIFF", r.status_code
    await peer.close()
    assert call.end_reason == ended_msg["reason"] and "agent" in (call.end_reason or ""), call.end_reason
    assert call.to_dict()["has_recording"]
    ended = await webhook_receiver.wait_for("call.ended")
    assert ended["call"]["id"] == call.id and ended["call"]["channel"] == "webrtc", ended["call"]
    assert any("goodbye" in t["text"].lower() for t in ended["transcript"] if t["role"] == "agent")
    assert "call.answered" in webhook_receiver.types()
    # the recording: caller left, agent right, both audible
    path = tmp_path / "rec.wav"
    path.write_bytes(r.content)
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 48000
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, 2)
    caller_rms, agent_rms = (float(np.sqrt((pcm[:, i].astype(np.float64) ** 2).mean())) for i in (0, 1))
    assert caller_rms > 100 and agent_rms > 100, (caller_rms, agent_rms)
