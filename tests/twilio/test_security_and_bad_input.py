"""Who may reach an agent over Twilio: only requests Twilio signed (behind a proxy too), only streams with
an unused token; and bad Media Streams input closes that stream with the reason, nothing else."""

from __future__ import annotations

import asyncio
import base64

import pytest

from parley.telephony.twilio.signature import sign

from tests.eventually import eventually
from tests.twilio.conftest import AUTH_TOKEN, voice_form
from tests.twilio.media_streams import MediaStreamsClient, parse_twiml, sid


async def _count_calls(app) -> int:  # type: ignore[no-untyped-def]
    calls, _ = await app.state.calls.list_calls(limit=50)
    return len(calls)


async def test_forged_or_unsigned_webhooks_get_403_and_no_call(parley_app) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app()
    form = voice_form(sid("CA"))
    forged = await app.webhook("/twilio/voice", form, token="not-the-auth-token")
    assert forged.status_code == 403 and forged.json()["error"] == "forbidden"
    assert "X-Twilio-Signature" in forged.json()["message"]
    unsigned = await app.http.post(app.base + "/twilio/voice", data=form)
    assert unsigned.status_code == 403
    other_url = await app.webhook("/twilio/voice", form, signed_url="https://evil.example/twilio/voice")
    assert other_url.status_code == 403
    tampered = dict(form, To="+19995550000")
    r = await app.http.post(app.base + "/twilio/voice", data=tampered,
                            headers={"X-Twilio-Signature": sign(AUTH_TOKEN, app.base + "/twilio/voice", form)})
    assert r.status_code == 403
    status = await app.webhook("/twilio/status", {"CallSid": form["CallSid"], "CallStatus": "completed"},
                               token="wrong")
    assert status.status_code == 403
    assert await _count_calls(app) == 0


async def test_a_replayed_voice_webhook_mints_no_second_token(parley_app) -> None:  # type: ignore[no-untyped-def]
    """Twilio's signature has no nonce: the same signed request sent again is refused (no record, no token)."""
    app = await parley_app()
    form = voice_form(sid("CA"))
    first = await app.webhook("/twilio/voice", form)
    assert parse_twiml(first.text)[1]["token"]
    again = await app.webhook("/twilio/voice", form)
    assert again.status_code == 200 and "<Reject" in again.text and "token" not in again.text
    other_account = await app.webhook("/twilio/voice", {**voice_form(sid("CA")), "AccountSid": "AC" + "9" * 32})
    assert "<Reject" in other_account.text
    assert await _count_calls(app) == 1


async def test_signature_behind_a_proxy(parley_app) -> None:  # type: ignore[no-untyped-def]
    """Twilio signs the public URL; Parley sees 127.0.0.1. TWILIO_PUBLIC_URL or the proxy's headers say it."""
    public = await parley_app(twilio_public_url="https://parley.example.com")
    r = await public.webhook("/twilio/voice", voice_form(sid("CA")),
                             signed_url="https://parley.example.com/twilio/voice")
    assert r.status_code == 200, r.text
    url, params = parse_twiml(r.text)
    assert url == "wss://parley.example.com/twilio/stream" and params["call_id"]
    # the URL the app sees is not what Twilio signed
    assert (await public.webhook("/twilio/voice", voice_form(sid("CA")))).status_code == 403

    proxied = await parley_app()
    r = await proxied.webhook("/twilio/voice", voice_form(sid("CA")), signed_url="https://tunnel.example.net/twilio/voice",
                              headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tunnel.example.net"})
    assert r.status_code == 200, r.text
    assert parse_twiml(r.text)[0] == "wss://tunnel.example.net/twilio/stream"


@pytest.mark.slow
async def test_missing_or_replayed_token_gets_no_agent(parley_app, fast_agents) -> None:  # type: ignore[no-untyped-def]
    app = await parley_app(agents=fast_agents)
    await (await app.state.twilio.engines(fast_agents.get("receptionist"))).warm()
    call_sid = sid("CA")
    url, params = parse_twiml((await app.webhook("/twilio/voice", voice_form(call_sid))).text)

    for bad in ({"call_id": params["call_id"]},  # no token
                {"call_id": params["call_id"], "token": "x" * 43},  # a wrong one
                {}):  # nothing at all
        stranger = MediaStreamsClient(url, bad, call_sid=call_sid)
        await stranger.open()
        stranger.start_audio()
        assert await stranger.wait_closed() == 1008
        await asyncio.sleep(0.3)  # a stream that got through would be sent the greeting by now
        assert not stranger.received.media
        await stranger.close()
    assert (await app.state.calls.get_call(params["call_id"])).status == "ringing"

    first = MediaStreamsClient(url, params, call_sid=call_sid)
    await first.open()
    first.start_audio()
    await eventually(lambda: first.received.media, timeout_s=15, what="the greeting on the real stream")
    replay = MediaStreamsClient(url, params, call_sid=call_sid)
    await replay.open()
    replay.start_audio()
    assert await replay.wait_closed() == 1008
    assert "already used" in replay.closed_reason
    assert not replay.received.media
    await replay.close()
    await first.stop()
    await app.wait_call(params["call_id"], {"completed"})
    await first.close()


def _media(client: MediaStreamsClient, payload: str) -> dict:  # type: ignore[type-arg]
    return {"event": "media", "streamSid": client.stream_sid, "sequenceNumber": "9",
            "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}}


@pytest.mark.slow
async def test_bad_stream_input_closes_that_stream_only(parley_app, fast_agents, capsys) -> None:  # type: ignore[no-untyped-def]
    from parley.logging import configure

    configure()  # logging writes to this test's captured stderr (not a stream an earlier test closed)
    app = await parley_app(agents=fast_agents)
    await (await app.state.twilio.engines(fast_agents.get("receptionist"))).warm()

    async def new_call() -> tuple[str, dict[str, str], str]:
        call_sid = sid("CA")
        url, params = parse_twiml((await app.webhook("/twilio/voice", voice_form(call_sid))).text)
        return url, params, call_sid

    # a start in another audio format: refused before any agent runs
    url, params, call_sid = await new_call()
    wrong = MediaStreamsClient(url, params, call_sid=call_sid,
                               media_format={"encoding": "audio/l16", "sampleRate": 16000, "channels": 1})
    await wrong.open()
    assert await wrong.wait_closed() == 1003
    assert "unsupported media format" in wrong.closed_reason and not wrong.received.media
    await wrong.close()

    # mid-call: an unknown event, then bad base64 — each closes its stream, the call is recorded as failed
    for bad, words in (({"event": "bogus", "streamSid": "MZ1"}, "unknown Media Streams event"),
                       (None, "not valid base64")):
        url, params, call_sid = await new_call()
        client = MediaStreamsClient(url, params, call_sid=call_sid)
        await client.open()
        client.start_audio()
        await eventually(lambda: client.received.media, timeout_s=15, what="the greeting")  # noqa: B023
        await client.send(bad or _media(client, "%%%not base64%%%"))
        assert await client.wait_closed() == 1003
        assert words in client.closed_reason
        ended = await app.wait_call(params["call_id"], {"failed"})
        assert words in (ended.end_reason or "")
        await client.close()
    logged = capsys.readouterr()
    assert "Twilio stream closed" in logged.out + logged.err  # the reason is logged

    # the server keeps serving: a good call still gets its greeting
    url, params, call_sid = await new_call()
    good = MediaStreamsClient(url, params, call_sid=call_sid)
    await good.open()
    good.start_audio()
    await eventually(lambda: len(good.received.media) > 20, timeout_s=15, what="a greeting after the bad streams")
    await good.send(_media(good, base64.b64encode(b"\xff" * 160).decode()))  # well-formed media is fine
    await good.stop()
    await app.wait_call(params["call_id"], {"completed"})
    await good.close()
