"""`POST /livekit/webhook` through the real app (lifespan included): LiveKit-signed events start room
sessions recorded as calls; unsigned, forged, stale or tampered ones get 401 and change nothing.

The agent's join then fails (the stand-in has the server API only, no real-time signalling), which the
call record says in words: that failure path is real; the media path needs a real server (test_live.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.api import ApiState, create_app
from tests.eventually import eventually
from tests.livekit.standin import StandInLiveKit

SIP_CALLER = {"sip.callID": "SCL_abc123", "sip.phoneNumber": "+4917612345", "sip.trunkPhoneNumber": "+4930123456",
              "sip.trunkID": "ST_1"}


def joined(room: str, identity: str, *, kind: str = "SIP", attributes: dict[str, str] | None = None,
           room_metadata: str = "", metadata: str = "") -> dict[str, Any]:
    return {"event": "participant_joined", "id": f"EV_{room}_{identity}", "createdAt": "1764900000",
            "room": {"sid": "RM_1", "name": room, "metadata": room_metadata},
            "participant": {"sid": "PA_1", "identity": identity, "kind": kind, "metadata": metadata,
                            "attributes": attributes or {}}}


@pytest.fixture
async def api(livekit: tuple[StandInLiveKit, str], settings) -> AsyncIterator[tuple[httpx.AsyncClient, ApiState]]:  # type: ignore[no-untyped-def]
    standin, url = livekit
    s = settings.model_copy(update={"livekit_url": url, "livekit_api_key": standin.key,
                                    "livekit_api_secret": type(settings.livekit_api_secret)(standin.secret)})
    app = create_app(s)
    async with app.router.lifespan_context(app):
        state = ApiState.of(app)
        assert state.livekit is not None
        state.livekit.join_timeout_s = 5.0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as client:
            yield client, state


async def _calls(state: ApiState) -> list[Any]:
    assert state.calls is not None
    calls, _ = await state.calls.list_calls()
    return calls


async def test_a_signed_participant_joined_starts_a_recorded_room_session(
        livekit: tuple[StandInLiveKit, str], api: tuple[httpx.AsyncClient, ApiState]) -> None:
    standin, _ = livekit
    client, state = api
    body, headers = standin.signed_webhook(joined("support-42", "sip_+4917612345", attributes=SIP_CALLER,
                                                  room_metadata=json.dumps({"agent": "receptionist"})))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["action"] == "session" and answer["agent"] == "receptionist"
    call = (await _calls(state))[0]
    assert call.id == answer["call_id"] and call.direction == "inbound" and call.trunk == "livekit"
    assert call.sip_call_id == "SCL_abc123" and call.from_number == "+4917612345"
    assert call.to_number == "+4930123456"
    lk = call.metadata["livekit"]
    assert call.channel == "livekit" and call.metadata["channel"] == "livekit" and lk["room"] == "support-42"
    assert lk["participant"] == "sip_+4917612345" and lk["sip_call_id"] == "SCL_abc123"
    assert lk["participant_kind"] == "sip" and lk["agent_reason"] == "room metadata agent"

    # the same event again (LiveKit retries) does not start a second session
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["call_id"] == call.id
    assert len(await _calls(state)) == 1

    # the stand-in cannot host media: the join fails and the record says so in words
    async def ended() -> Any:
        assert state.calls is not None
        c = await state.calls.get_call(call.id)
        return c if c is not None and c.status == "failed" else None

    done = await eventually(ended, timeout_s=20, what="the failed join recorded")
    assert "could not join LiveKit room 'support-42': cannot connect to the LiveKit room at ws://127.0.0.1" in (
        done.end_reason or "")


@pytest.mark.parametrize("how", ["unsigned", "wrong secret", "stale", "tampered body", "other key"])
async def test_forged_or_stale_webhooks_get_401_and_change_nothing(
        livekit: tuple[StandInLiveKit, str], api: tuple[httpx.AsyncClient, ApiState], how: str) -> None:
    standin, _ = livekit
    client, state = api
    event = joined("room-x", "web-user")
    body, headers = standin.signed_webhook(event)
    if how == "unsigned":
        headers.pop("Authorization")
    elif how == "wrong secret":
        body, headers = standin.signed_webhook(event, secret="an-attackers-secret-" * 3)
    elif how == "stale":
        body, headers = standin.signed_webhook(event, ttl_s=-3600)
    elif how == "tampered body":
        body = body.replace("web-user", "someone-else")
    elif how == "other key":
        other = StandInLiveKit(key="APIother", secret=standin.secret)
        body, headers = other.signed_webhook(event)
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized" and r.json()["message"].startswith("LiveKit webhook refused")
    assert await _calls(state) == []
    ok_body, ok_headers = standin.signed_webhook(joined("room-y", "web-user", kind="STANDARD"))
    assert (await client.post("/livekit/webhook", content=ok_body, headers=ok_headers)).status_code == 200  # serving


async def test_agents_are_ignored_and_unknown_agents_refused_in_words(
        livekit: tuple[StandInLiveKit, str], api: tuple[httpx.AsyncClient, ApiState]) -> None:
    standin, _ = livekit
    client, state = api
    body, headers = standin.signed_webhook(joined("r1", "parley-agent-r1", kind="AGENT"))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.json() == {"event": "participant_joined", "action": "ignored", "reason": "an agent participant"}
    body, headers = standin.signed_webhook(joined("r2", "web", kind="STANDARD",
                                                  metadata=json.dumps({"agent": "nobody"})))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["action"] == "refused"
    assert "participant metadata agent asks for agent 'nobody'" in r.json()["reason"]
    assert await _calls(state) == []


async def test_rooms_that_ask_for_no_agent_are_left_alone(
        livekit: tuple[StandInLiveKit, str], api: tuple[httpx.AsyncClient, ApiState]) -> None:
    standin, _ = livekit
    client, state = api
    body, headers = standin.signed_webhook(joined("team-standup", "alice", kind="STANDARD"))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.json()["action"] == "ignored" and "nothing asks for a Parley agent here" in r.json()["reason"]
    assert await _calls(state) == []
    body, headers = standin.signed_webhook(joined("parley-german_assistant-1", "bob", kind="STANDARD"))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.json()["action"] == "session" and r.json()["agent"] == "german_assistant"
    call = (await _calls(state))[0]
    assert call.metadata["livekit"]["agent_reason"] == "room name prefix parley-german_assistant-"


async def test_webhook_without_livekit_settings_is_503(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as client:
        r = await client.post("/livekit/webhook", content="{}", headers={"Authorization": "x"})
    assert r.status_code == 503 and "LIVEKIT_URL is not set" in r.json()["message"]


@pytest.fixture
async def silent_livekit(settings) -> AsyncIterator[tuple[StandInLiveKit, httpx.AsyncClient, ApiState]]:  # type: ignore[no-untyped-def]
    """LIVEKIT_URL at a TCP server that accepts and never answers: the agent's join hangs (as against a server
    that is slow to admit it), so what happens meanwhile can be seen."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    signer = StandInLiveKit()
    s = settings.model_copy(update={"livekit_url": f"http://127.0.0.1:{port}", "livekit_api_key": signer.key,
                                    "livekit_api_secret": type(settings.livekit_api_secret)(signer.secret)})
    app = create_app(s)
    try:
        async with app.router.lifespan_context(app):
            state = ApiState.of(app)
            assert state.livekit is not None
            state.livekit.join_timeout_s = 30.0
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
                yield signer, c, state
    finally:
        for w in held:
            w.close()
        server.close()


@pytest.mark.parametrize("ending", ["participant_left", "room_finished"])
async def test_the_caller_leaving_or_the_room_closing_before_the_agent_joined_ends_the_call(
        silent_livekit: tuple[StandInLiveKit, httpx.AsyncClient, ApiState], ending: str) -> None:
    signer, client, state = silent_livekit
    body, headers = signer.signed_webhook(joined("parley-receptionist-lobby", "web-7", kind="STANDARD"))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    call_id = r.json()["call_id"]
    assert state.livekit is not None and len(state.livekit.live) == 1
    await asyncio.sleep(0.3)  # the join is under way (and hangs)
    event = {"event": ending, "room": {"name": "parley-receptionist-lobby"}, "participant": {"identity": "web-7"}}
    body, headers = signer.signed_webhook(event)
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["action"] == "noted"

    async def ended() -> Any:
        assert state.calls is not None
        c = await state.calls.get_call(call_id)
        return c if c is not None and c.status == "canceled" else None

    done = await eventually(ended, timeout_s=10, what="the session canceled")
    assert done.end_reason == "the caller left before the agent joined"
    sessions = state.livekit
    await eventually(lambda: not sessions.live, timeout_s=5, what="the session forgotten")


async def test_the_callee_of_parleys_own_outbound_call_is_not_a_new_session(
        livekit: tuple[StandInLiveKit, str], api: tuple[httpx.AsyncClient, ApiState]) -> None:
    standin, _ = livekit
    client, state = api
    body, headers = standin.signed_webhook(joined("parley-receptionist-abc", "sip-+15551234567",
                                                  attributes={**SIP_CALLER, "parley.call_id": "abc"}))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.json()["action"] == "ignored" and "Parley's outbound call abc" in r.json()["reason"]
    assert await _calls(state) == []


async def test_a_webhook_for_a_room_an_explicit_dispatch_waits_in_joins_that_session(
        silent_livekit: tuple[StandInLiveKit, httpx.AsyncClient, ApiState]) -> None:
    signer, client, state = silent_livekit
    assert state.livekit is not None
    explicit = await state.livekit.start("parley-receptionist-desk", agent="receptionist", source="cli")
    body, headers = signer.signed_webhook(joined("parley-receptionist-desk", "visitor", kind="STANDARD"))
    r = await client.post("/livekit/webhook", content=body, headers=headers)
    assert r.json()["call_id"] == explicit.call_id and len(await _calls(state)) == 1
