"""Twilio's REST API in a call's life (against the REST stand-in): the agent hangs up and transfers through
`calls(sid).update`, status callbacks move call states, and outbound calls are placed with
`calls.create(twiml=<Connect><Stream>)`, answering-machine detection passed through, retried like SIP."""

from __future__ import annotations

import socket
from xml.etree import ElementTree

import pytest

from parley.api.runtime import gateway_startup
from tests.conftest import free_port
from tests.eventually import eventually
from tests.twilio.conftest import ACCOUNT_SID, read_pcm, voice_form
from tests.twilio.media_streams import MediaStreamsClient, parse_twiml, sid

pytestmark = [pytest.mark.slow]
KEY = {"X-API-Key": "test-key"}


async def _answered_call(app, twilio_api, agents):  # type: ignore[no-untyped-def]
    await (await app.state.twilio.engines(agents.get("receptionist"))).warm()
    call_sid = sid("CA")
    twilio_api.add_inbound_call(call_sid, "+15005550006", "+14155550100")
    url, params = parse_twiml((await app.webhook("/twilio/voice", voice_form(call_sid))).text)
    client = MediaStreamsClient(url, params, call_sid=call_sid)
    await client.open()
    client.start_audio()
    await eventually(lambda: len(client.received.media) > 10, timeout_s=15, what="the greeting")
    return client, params["call_id"], call_sid


async def test_agent_hangs_up_and_transfers_through_rest(parley_app, fast_agents, twilio_api,
                                                         speech_wav) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app(agents=fast_agents, twilio_api_base_url=twilio_api.url)
    bye = read_pcm(speech_wav("Goodbye, that's all, thank you.", engine="piper", rate=8000))
    person = read_pcm(speech_wav("Can I speak to a person please?", engine="piper", rate=8000))

    client, call_id, call_sid = await _answered_call(app, twilio_api, fast_agents)
    client.say(bye)
    ended = await app.wait_call(call_id, {"completed"}, timeout=30)
    assert ended.end_reason == "agent_ended", ended.end_reason
    hangups = [r for r in twilio_api.writes(f"/Calls/{call_sid}.json") if r.form.get("Status") == ["completed"]]
    assert len(hangups) == 1
    assert await client.wait_closed() == 1000
    await client.close()

    client, call_id, call_sid = await _answered_call(app, twilio_api, fast_agents)
    client.say(person)
    ended = await app.wait_call(call_id, {"completed"}, timeout=30)
    assert ended.end_reason == "transferred", ended.end_reason
    twiml = twilio_api.calls[call_sid]["twiml"]
    sip = ElementTree.fromstring(twiml).find("./Dial/Sip")
    assert sip is not None and sip.text == "sip:frontdesk@127.0.0.1", twiml
    await client.close()


async def test_status_callbacks_move_call_states(parley_app, fast_agents, twilio_api) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app(agents=fast_agents, twilio_api_base_url=twilio_api.url)
    # the caller hangs up before the stream starts: Twilio's `completed` ends the ringing call
    call_sid = sid("CA")
    _, params = parse_twiml((await app.webhook("/twilio/voice", voice_form(call_sid))).text)
    r = await app.webhook("/twilio/status", {"AccountSid": ACCOUNT_SID, "CallSid": call_sid,
                                             "CallStatus": "no-answer", "SipResponseCode": "487"})
    assert r.status_code == 204
    ended = await app.wait_call(params["call_id"], {"no_answer"})
    assert "Twilio: no answer" in (ended.end_reason or "")
    detail = await app.state.calls.get(params["call_id"])
    assert any(e.type == "twilio.status" and e.data["CallStatus"] == "no-answer" for e in detail.timeline)

    # during a call: `completed` from Twilio ends the stream's conversation
    client, call_id, call_sid = await _answered_call(app, twilio_api, fast_agents)
    r = await app.webhook("/twilio/status", {"AccountSid": ACCOUNT_SID, "CallSid": call_sid,
                                             "CallStatus": "completed", "CallDuration": "3"})
    assert r.status_code == 204
    ended = await app.wait_call(call_id, {"completed"})
    assert ended.end_reason == "caller_hangup"
    await client.close()
    # an unknown CallSid is noted, not an error
    r = await app.webhook("/twilio/status", {"AccountSid": ACCOUNT_SID, "CallSid": sid("CA"), "CallStatus": "ringing"})
    assert r.status_code == 204


async def test_outbound_call_over_twilio(parley_app, fast_agents, twilio_api) -> None:  # type: ignore[no-untyped-def]
    port = free_port(socket.SOCK_STREAM)
    app = await parley_app(agents=fast_agents, port=port, startup=[gateway_startup(dial=True, warm=False)],
                           twilio_api_base_url=twilio_api.url, twilio_public_url=f"http://127.0.0.1:{port}",
                           twilio_phone_number="+15005550006", sip_port=free_port(),
                           sip_transport="udp")
    await (await app.state.twilio.engines(fast_agents.get("receptionist"))).warm()
    r = await app.http.post(app.base + "/api/outbound-call", headers=KEY, json={
        "to_number": "+14155550123", "trunk": "twilio-streams",
        "metadata": {"twilio": {"machine_detection": "DetectMessageEnd", "async_amd": "true"}}})
    assert r.status_code == 200, r.text
    call_id = r.json()["call_id"]

    created = await eventually(lambda: list(twilio_api.calls.values()), timeout_s=10, what="calls.create")
    placed = created[0]
    assert placed["to"] == "+14155550123" and placed["from"] == "+15005550006"
    assert placed["machine_detection"] == "DetectMessageEnd" and placed["async_amd"] == "true"
    assert placed["status_callback"] == f"http://127.0.0.1:{port}/twilio/status"
    url, params = parse_twiml(placed["twiml"])
    assert params["call_id"] == call_id

    async def sid_stored(call_id: str, call_sid: str) -> bool:
        record = await app.state.calls.get_call(call_id)
        return record.external_id == call_sid and record.channel == "twilio"

    await eventually(lambda: sid_stored(call_id, placed["sid"]), timeout_s=5, what="the CallSid on the record")

    r = await app.webhook("/twilio/status", {"AccountSid": ACCOUNT_SID, "CallSid": placed["sid"],
                                             "CallStatus": "ringing"})
    await app.wait_call(call_id, {"ringing"})
    client = MediaStreamsClient(url, params, call_sid=placed["sid"])
    await client.open()
    client.start_audio()
    await eventually(lambda: len(client.received.media) > 25, timeout_s=15, what="the outbound greeting")
    await client.stop()
    ended = await app.wait_call(call_id, {"completed"})
    assert ended.end_reason == "caller_hangup" and ended.direction == "outbound"
    await client.close()

    # busy, then a retry (as for SIP), then no answer: the final status
    r = await app.http.post(app.base + "/api/outbound-call", headers=KEY, json={
        "to_number": "+14155550124", "trunk": "twilio-streams", "max_retries": 1, "retry_backoff_s": 0.2})
    call_id = r.json()["call_id"]

    def attempts() -> list[dict]:  # type: ignore[type-arg]
        return [c for c in twilio_api.calls.values() if c["to"] == "+14155550124"]

    first = (await eventually(attempts, timeout_s=10, what="the first attempt"))[0]
    await eventually(lambda: sid_stored(call_id, first["sid"]), timeout_s=5, what="the first CallSid")
    r = await app.webhook("/twilio/status", {"AccountSid": ACCOUNT_SID, "CallSid": first["sid"],
                                             "CallStatus": "busy", "SipResponseCode": "486"})
    assert r.status_code == 204
    both = await eventually(lambda: len(attempts()) == 2 and attempts(), timeout_s=10, what="the retry")
    second = both[1]
    await eventually(lambda: sid_stored(call_id, second["sid"]), timeout_s=5, what="the retry's CallSid")
    await app.webhook("/twilio/status", {"AccountSid": ACCOUNT_SID, "CallSid": second["sid"],
                                         "CallStatus": "no-answer"})
    final = await app.wait_call(call_id, {"no_answer"})
    assert final.attempt == 2


async def test_dtmf_out_plays_digits_and_the_stream_reconnects(parley_app, fast_agents, twilio_api,
                                                               speech_wav) -> None:  # type: ignore[no-untyped-def]
    """The engine's `send_dtmf` on a Twilio call: `<Play digits>` through the REST API, then the same call's
    stream again (a fresh single-use token); the conversation goes on over the new WebSocket."""
    import asyncio

    app = await parley_app(agents=fast_agents, twilio_api_base_url=twilio_api.url)
    question = read_pcm(speech_wav("What are your opening hours?", engine="piper", rate=8000))
    client, call_id, call_sid = await _answered_call(app, twilio_api, fast_agents)
    channel = app.state.twilio.live[call_id].channel
    sending = asyncio.create_task(channel.send_dtmf("12#"))  # as the send_dtmf tool calls it

    updates = await eventually(lambda: twilio_api.calls[call_sid].get("twiml_updates"), timeout_s=15,
                               what="the TwiML update with the digits")
    root = ElementTree.fromstring(updates[-1])
    assert root.find("./Play").get("digits") == "12#"
    url, params = parse_twiml(updates[-1])
    assert params["call_id"] == call_id and params["resume"] == "1" and params["token"]
    await sending

    # Twilio ends the old stream, plays the digits, and opens the new one
    await client.stop()
    await client.close()
    again = MediaStreamsClient(url, params, call_sid=call_sid)
    await again.open()
    again.start_audio()
    replay = MediaStreamsClient(url, params, call_sid=call_sid)
    await replay.open()
    assert await replay.wait_closed() == 1008 and not replay.received.media
    await replay.close()
    assert (await app.state.calls.get_call(call_id)).status == "in_progress"

    again.say(question)

    async def answered() -> bool:
        entries = await app.state.calls.transcript(call_id)
        return any(e.role == "agent" and "monday" in e.text.lower() for e in entries)

    await eventually(answered, timeout_s=30, what="the answer after the reconnect")
    await eventually(lambda: len(again.received.media) > 25, timeout_s=10, what="the answer's audio")
    await again.stop()
    ended = await app.wait_call(call_id, {"completed"})
    assert ended.end_reason == "caller_hangup"
    detail = await app.state.calls.get(call_id)
    assert any(e.type == "twilio.dtmf_out" and e.data["digits"] == "12#" for e in detail.timeline)
    await again.close()


def _goertzel(pcm, freq: float, rate: int = 8000) -> float:  # type: ignore[no-untyped-def]
    import math

    import numpy as np

    n = pcm.size
    k = round(n * freq / rate)
    w = 2 * math.pi * k / n
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in pcm.astype(np.float64):
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


async def test_dtmf_out_falls_back_to_inband_tones(parley_app, fast_agents, twilio_api) -> None:  # type: ignore[no-untyped-def]
    """When Twilio refuses the TwiML update (here: the stand-in does not know the call), the digits are played
    as tones on the stream itself; the far end hears a 697 + 1209 Hz "1"."""
    import numpy as np

    from parley.media.g711 import ulaw_decode

    app = await parley_app(agents=fast_agents, twilio_api_base_url=twilio_api.url)
    await (await app.state.twilio.engines(fast_agents.get("receptionist"))).warm()
    call_sid = sid("CA")  # not registered with the stand-in: calls(sid).update answers 404
    url, params = parse_twiml((await app.webhook("/twilio/voice", voice_form(call_sid))).text)
    client = MediaStreamsClient(url, params, call_sid=call_sid)
    await client.open()
    client.start_audio()
    await eventually(lambda: len(client.received.media) > 10, timeout_s=15, what="the greeting")
    channel = app.state.twilio.live[params["call_id"]].channel
    channel.clear_output()  # stop the greeting: the tones follow at once
    before = len(client.received.media)
    await channel.send_dtmf("1")
    await eventually(lambda: len(client.received.media) >= before + 5, timeout_s=10, what="the tone frames")
    tone = ulaw_decode(b"".join(p for _, p in client.received.media[before:before + 5]))
    loud = tone[np.abs(tone.astype(np.int32)) > 0]
    assert loud.size > 400, "no tone audio"
    energy = {f: _goertzel(loud[:800], f) for f in (697, 770, 1209, 1336)}
    assert energy[697] > 10 * energy[770] and energy[1209] > 10 * energy[1336], energy
    await client.stop()
    await app.wait_call(params["call_id"], {"completed"})
    await client.close()
