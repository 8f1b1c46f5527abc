"""Signalling at the edge: bad offers, unknown agents, missing keys and full capacity each get a clear
4xx/503 naming the field and the reason, nothing is left half-open, and the server keeps answering
good offers afterwards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from parley.agents import AgentRegistry
from tests.conftest import ROOT
from tests.eventually import eventually
from tests.webrtc.peer import BrowserPeer

pytestmark = [pytest.mark.slow]


def _without_audio(sdp: str) -> str:
    """The offer with its audio m-section removed (only the data channel left)."""
    out, skipping = [], False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            skipping = line.startswith("m=audio")
        if line.startswith("a=group:BUNDLE"):
            line = "a=group:BUNDLE " + " ".join(m for m in line.split()[1:] if m != "0")
        if not skipping:
            out.append(line)
    return "\r\n".join(out)


async def _offer(client: Any, sdp: str, **extra: Any) -> Any:
    return await client.post("/api/webrtc/offer", json={"agent": "receptionist", "sdp": sdp, **extra})


def _field(r: Any) -> str:
    return r.json()["details"][0]["field"]


async def test_bad_offers_are_refused_by_field_and_the_server_keeps_serving(web_server) -> None:  # type: ignore[no-untyped-def]
    web = await web_server()
    probe = BrowserPeer()
    real = await probe.offer_sdp()
    await probe.close()
    async with web.client() as client:
        r = await _offer(client, "hello, I am not an SDP")
        assert r.status_code == 400 and _field(r) == "sdp" and "v=0" in r.json()["message"], r.text
        assert r.json()["error"] == "invalid_sdp"

        r = await _offer(client, _without_audio(real))
        assert r.status_code == 400 and _field(r) == "sdp" and "no audio m-line" in r.json()["message"], r.text

        r = await _offer(client, re.sub(r"m=audio \d+ ", "m=audio 0 ", real))
        assert r.status_code == 400 and "port 0" in r.json()["message"], r.text

        r = await _offer(client, real.replace("opus/48000/2", "speex/48000"))
        assert r.status_code == 400 and "Opus" in r.json()["message"], r.text

        r = await _offer(client, real.replace("a=fingerprint:", "a=x-fingerprint:"))
        assert r.status_code == 400 and "fingerprint" in r.json()["message"], r.text

        r = await _offer(client, real.replace("a=setup:actpass", "a=setup:sideways"))  # the stack rejects it
        assert r.status_code == 400 and _field(r) == "sdp" and "could not be applied" in r.json()["message"], r.text

        r = await _offer(client, real, type="answer")
        assert r.status_code == 400 and _field(r) == "type", r.text

        r = await client.post("/api/webrtc/offer", json={"agent": "no_such_agent", "sdp": real})
        assert r.status_code == 404 and _field(r) == "agent" and "no_such_agent" in r.json()["message"], r.text

        r = await client.post("/api/webrtc/offer", json={"agent": "receptionist"})
        assert r.status_code == 422 and _field(r) == "sdp", r.text

        r = await client.delete("/api/webrtc/calls/not-a-call")
        assert r.status_code == 404 and _field(r) == "call_id", r.text

        # nothing half-open, and a good offer still gets a call
        service = web.state.webrtc
        assert service is not None and not service.browser_calls and not service.live
        calls, _ = await web.state.calls.list_calls()
        assert calls == [], "a refused offer must not leave a call record"
        peer = BrowserPeer()
        r = await peer.call(client)
        assert r.status_code == 200, r.text
        await eventually(lambda: peer.transcripts("agent"), timeout_s=30, what="the greeting after bad offers")
        r = await client.delete(f"/api/webrtc/calls/{peer.call_id}")
        assert r.status_code == 200, r.text
        call = await web.wait_status(peer.call_id, {"completed"})
        assert call.end_reason == "caller_hangup"
        await eventually(lambda: {"type": "ended", "reason": "caller_hangup"} in peer.messages,
                         timeout_s=5, what="the 'ended' message on the page")
        await peer.close()


async def test_an_offer_without_a_valid_key_is_refused(web_server) -> None:  # type: ignore[no-untyped-def]
    web = await web_server(warm=False)
    probe = BrowserPeer()
    sdp = await probe.offer_sdp()
    await probe.close()
    for headers in ({}, {"X-API-Key": "wrong"}):
        async with web.client(headers=headers) as client:
            r = await _offer(client, sdp)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text
            r = await client.delete("/api/webrtc/calls/anything")
            assert r.status_code == 401, r.text
    assert not web.state.webrtc.browser_calls  # type: ignore[union-attr]


async def test_capacity_caps_browser_calls_like_phone_calls(web_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web = await web_server(num_agents=1)
    first = BrowserPeer()
    async with web.client() as client:
        assert (await first.call(client)).status_code == 200
        second = BrowserPeer()
        r = await second.call(client)
        assert r.status_code == 503 and r.json()["error"] == "over_capacity", r.text
        assert "all 1 conversation slots are busy" in r.json()["message"] and _field(r) == "agent"
        # the slot comes back when the first call ends
        assert (await client.delete(f"/api/webrtc/calls/{first.call_id}")).status_code == 200
        await web.wait_status(first.call_id, {"completed", "canceled"})
        await eventually(lambda: not web.state.webrtc.live, timeout_s=5, what="the slot freed")  # type: ignore[union-attr]
        third = BrowserPeer()
        assert (await third.call(client)).status_code == 200
        assert (await client.delete(f"/api/webrtc/calls/{third.call_id}")).status_code == 200
    for p in (first, second, third):
        await p.close()


async def test_an_agent_at_its_own_cap_answers_busy(web_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agents_dir = tmp_path / "agents"
    agents_dir.mkdir()
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec["max_concurrent_calls"] = 1
    (agents_dir / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    registry = AgentRegistry.load(agents_dir, ROOT / "prompts")
    web = await web_server(registry=registry, warm=False)
    first, second = BrowserPeer(), BrowserPeer()
    async with web.client() as client:
        assert (await first.call(client)).status_code == 200
        r = await second.call(client)
        assert r.status_code == 429 and r.json()["error"] == "busy", r.text
        assert "cap of 1 concurrent calls" in r.json()["message"]
        assert (await client.delete(f"/api/webrtc/calls/{first.call_id}")).status_code == 200
        await web.wait_status(first.call_id, {"completed", "canceled"})
    await first.close()
    await second.close()


async def test_a_browser_that_never_connects_is_given_up_with_the_reason(web_server) -> None:  # type: ignore[no-untyped-def]
    web = await web_server(warm=False, webrtc_connect_timeout_s=1.0)
    peer = BrowserPeer()
    async with web.client() as client:
        r = await client.post("/api/webrtc/offer", json={"agent": "receptionist", "sdp": await peer.offer_sdp()})
        assert r.status_code == 200, r.text  # the page never applies the answer: ICE never starts
        call = await web.wait_status(r.json()["call_id"], {"failed"}, timeout=15)
    await peer.close()
    assert "did not connect within 1 s" in (call.end_reason or "") and "WEBRTC_ICE_SERVERS" in call.end_reason
    await eventually(lambda: not web.state.webrtc.live, timeout_s=5, what="the slot freed")  # type: ignore[union-attr]


async def test_canceling_a_live_browser_call_hangs_it_up(web_server) -> None:  # type: ignore[no-untyped-def]
    web = await web_server()
    peer = BrowserPeer()
    async with web.client() as client:
        assert (await peer.call(client)).status_code == 200
        await eventually(lambda: peer.transcripts("agent"), timeout_s=30, what="the greeting")
        r = await client.post(f"/api/calls/{peer.call_id}/cancel")
        assert r.status_code == 200, r.text
        await eventually(lambda: any(m["type"] == "ended" for m in peer.messages), timeout_s=10,
                         what="the 'ended' message")
        await eventually(lambda: not web.state.webrtc.browser_calls, timeout_s=10,  # type: ignore[union-attr]
                         what="the browser call closed")
        call = await web.state.calls.get_call(peer.call_id or "")
    await peer.close()
    assert call is not None and call.status == "canceled"
    assert next(m for m in peer.messages if m["type"] == "ended")["reason"] == "canceled"
