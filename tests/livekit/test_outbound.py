"""`POST /api/outbound-call` with `"trunk": "livekit:<name>"`: the dialer places the call through LiveKit SIP
(CreateSIPParticipant on the stand-in), with the SIP gateway running beside it for every other trunk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from parley.api import ApiState, create_app
from parley.api.runtime import gateway_startup
from parley.calls.states import TERMINAL
from parley.telephony.livekit import sip_sync
from parley.telephony.livekit.config import LiveKitConfig
from parley.telephony.trunks import TelephonyConfig, Trunk
from tests.eventually import eventually
from tests.livekit.standin import StandInLiveKit

KEY = {"X-API-Key": "test-key"}
CARRIER = Trunk.model_validate({"name": "carrier", "outbound": {
    "host": "sip.carrier.example", "username": "acme-user", "password": "s3cret", "caller_id": "+4930123456",
    "from_user": "username"}})

Api = tuple[httpx.AsyncClient, ApiState]


@pytest.fixture
async def api(livekit: tuple[StandInLiveKit, str], settings) -> AsyncIterator[Api]:  # type: ignore[no-untyped-def]
    standin, url = livekit
    s = settings.model_copy(update={
        "livekit_url": url, "livekit_api_key": standin.key, "sip_port": 0,
        "livekit_api_secret": type(settings.livekit_api_secret)(standin.secret)})
    config = LiveKitConfig.from_settings(s)
    client = config.api()
    try:  # the LiveKit trunk, made the way `parley livekit sip ensure` makes it
        want = sip_sync.desired(TelephonyConfig(trunks=[CARRIER]))
        await sip_sync.apply(client, sip_sync.plan(want, (await sip_sync.read(client))[0]))
    finally:
        await client.aclose()
    app = create_app(s, api_keys=["test-key"], startup=[gateway_startup(warm=False)])
    async with app.router.lifespan_context(app):
        state = ApiState.of(app)
        assert state.livekit is not None
        state.livekit.join_timeout_s = 5.0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley",
                                     headers=KEY) as http:
            yield http, state


async def _place(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await http.post("/api/outbound-call", json={"to_number": "+15551234567", "trunk": "livekit:carrier",
                                                    "max_retries": 0, **extra})
    assert r.status_code == 200, r.text
    call_id = r.json()["call_id"]

    async def final() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get(f"/api/calls/{call_id}")).json()
        return body if body["status"] in TERMINAL else None

    return await eventually(final, timeout_s=30, interval_s=0.1, what=f"call {call_id} ended")


async def test_an_answered_livekit_call_records_its_sip_call_id_and_room(
        livekit: tuple[StandInLiveKit, str], api: Api) -> None:
    standin, _ = livekit
    http, _ = api
    detail = await _place(http)
    assert len(standin.sip_participants) == 1
    req = standin.sip_participants[0]
    trunk_id = next(iter(standin.outbound))
    assert req.sip_trunk_id == trunk_id and req.sip_call_to == "+15551234567"
    assert req.sip_number == "acme-user"  # the carrier wants the SIP username in From
    assert req.wait_until_answered and req.room_name.startswith("parley-receptionist-")
    assert req.participant_attributes["parley.call_id"] == detail["id"]
    assert detail["sip_call_id"] and detail["sip_call_id"].startswith("SCL_")
    assert detail["metadata"]["channel"] == "livekit"
    assert detail["metadata"]["livekit"]["room"] == req.room_name
    # answered, then the agent could not join (the stand-in has no media): said in words
    assert detail["status"] == "failed" and "could not join LiveKit room" in detail["end_reason"]


async def test_busy_and_missing_trunk_are_said_in_words(livekit: tuple[StandInLiveKit, str], api: Api) -> None:
    standin, _ = livekit
    http, _ = api
    standin.sip_failure = (486, "Busy Here")
    detail = await _place(http)
    assert detail["status"] == "busy" and "486 Busy Here from trunk 'livekit:carrier'" in detail["end_reason"]
    detail = await _place(http, trunk="livekit:nowhere")
    assert detail["status"] == "failed"
    assert "LiveKit has no outbound trunk named 'nowhere'" in detail["end_reason"]


async def test_a_livekit_trunk_without_livekit_settings_is_422_naming_the_field(settings) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings, api_keys=["test-key"])
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley",
                                     headers=KEY) as http:
            r = await http.post("/api/outbound-call", json={"to_number": "+15551234567", "trunk": "livekit:x"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "trunk"
    assert "LiveKit SIP, which is not configured here" in r.json()["message"]
