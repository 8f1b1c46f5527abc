"""The LiveKit server-API stand-in checks what the real server checks (so the other tests can fail): the
token's signature, issuer, expiry and per-method grants; it speaks Twirp's JSON encoding as well as protobuf."""

from __future__ import annotations

import httpx

from parley.telephony.livekit.config import LiveKitConfig
from tests.livekit.standin import StandInLiveKit


async def test_grants_expiry_and_json(livekit: tuple[StandInLiveKit, str]) -> None:
    standin, url = livekit
    config = LiveKitConfig(url, standin.key, standin.secret)
    path = f"{url}/twirp/livekit.SIP/ListSIPInboundTrunk"
    async with httpx.AsyncClient() as http:
        async def call(token: str | None, body: str = "{}") -> httpx.Response:
            headers = {"Content-Type": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            return await http.post(path, content=body, headers=headers)

        r = await call(config.token("ops", sip_admin=True))
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        r = await call(config.token("ops", room_list=True))
        assert r.status_code == 403 and r.json() == {"code": "permission_denied",
                                                     "msg": "permissions denied: the token lacks sip.admin"}
        r = await call(config.token("ops", sip_admin=True, ttl_s=-3600))
        assert r.status_code == 401 and r.json()["msg"] == "token is expired"
        r = await call(None)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
        r = await call(config.token("ops", sip_admin=True), body="{not json")
        assert r.status_code == 400 and r.json()["code"] == "malformed"
        r = await http.post(f"{url}/twirp/livekit.SIP/NoSuchMethod", content="{}",
                            headers={"Content-Type": "application/json"})
        assert r.status_code == 404 and r.json()["code"] == "bad_route"
