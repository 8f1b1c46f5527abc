"""A call over Twilio Media Streams, end to end: a Twilio-signed voice webhook → TwiML `<Connect><Stream>`
→ a real WebSocket client playing Twilio (tests/twilio/media_streams.py) with a synthesised caller →
Parley's real app under uvicorn, the receptionist agent with Whisper and espeak."""

from __future__ import annotations

import pytest

from tests.eventually import eventually
from tests.telephony.conftest import speech_energy_seconds
from tests.twilio.conftest import read_pcm, voice_form
from tests.twilio.media_streams import MediaStreamsClient, parse_twiml, sid

pytestmark = [pytest.mark.slow]


async def test_call_over_media_streams(parley_app, fast_agents, speech_wav) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app(agents=fast_agents)
    bridge = app.state.twilio
    calls = app.state.calls
    assert bridge is not None and calls is not None
    await (await bridge.engines(fast_agents.get("receptionist"))).warm()
    question = read_pcm(speech_wav("What are your opening hours?", engine="piper", rate=8000))

    call_sid = sid("CA")
    r = await app.webhook("/twilio/voice", voice_form(call_sid))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml"), r.text
    url, params = parse_twiml(r.text)
    assert url == app.ws_base + "/twilio/stream"
    assert set(params) == {"call_id", "token"} and len(params["token"]) >= 40
    call_id = params["call_id"]
    record = await calls.get_call(call_id)
    assert record is not None and record.channel == "twilio" and record.external_id == call_sid
    assert record.status == "ringing" and params["token"] not in str(record.metadata)  # only its digest

    client = MediaStreamsClient(url, params, call_sid=call_sid)
    await client.open()
    client.start_audio()
    try:
        # the greeting arrives paced: 50 frames (1 s of audio) take about a second to arrive, not a burst
        await eventually(lambda: len(client.received.media) >= 60, timeout_s=20, what="the agent's greeting")
        arrivals = [t for t, _ in client.received.media[:60]]
        assert arrivals[59] - arrivals[10] >= 0.9, arrivals[59] - arrivals[10]
        assert all(len(p) == 160 for _, p in client.received.media[:60])
        assert client.received.marks, "no mark sent with the agent's audio"

        # barge-in: the caller asks over the greeting; Parley sends `clear` and answers the question
        client.say(question)
        await eventually(lambda: client.received.clears, timeout_s=10, what="a clear after the barge-in")

        async def answered() -> bool:
            entries = await calls.transcript(call_id)
            caller = " ".join(e.text.lower() for e in entries if e.role == "caller")
            agent = " ".join(e.text.lower() for e in entries if e.role == "agent")
            return "hours" in caller and "monday" in agent

        await eventually(answered, timeout_s=25, what="the caller's question and the agent's answer stored")
        assert speech_energy_seconds(client.received.audio()) > 2.0

        # what the caller heard of the greeting, by Twilio's echoed marks: its start, not all of it
        detail = await calls.get(call_id)
        assert detail is not None
        cut = next(e.data for e in detail.timeline if e.type == "interruption" and e.data["kind"] == "barge_in")
        assert cut["heard_text"].startswith("Hello") and "speak to a person" not in cut["heard_text"], cut

        await client.dtmf("1")

        async def dtmf_seen() -> bool:
            detail = await calls.get(call_id)
            return detail is not None and any(e.type == "dtmf" and e.data.get("digit") == "1"
                                              for e in detail.timeline)

        await eventually(dtmf_seen, timeout_s=10, what="the caller's DTMF on the call's timeline")
        await client.stop()
        ended = await app.wait_call(call_id, {"completed"})
        assert ended.end_reason == "caller_hangup"
        assert await client.wait_closed() == 1000
    finally:
        await client.close()

    # the CallSid finds the call through the API
    found = await app.http.get(app.base + "/api/calls", params={"external_id": call_sid},
                               headers={"X-API-Key": "test-key"})
    assert [c["id"] for c in found.json()["calls"]] == [call_id]
    assert found.json()["calls"][0]["channel"] == "twilio"
