"""Outbound calls end to end: `POST /api/outbound-call` on a real API server → the dialer → our INVITE
through a trunk that challenges (SIPp `verifyauth`) → the agent and the callee talk → hang-up, webhooks.
Busy and no-answer drive the retry policy; the agent's transfer tool sends REFER."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from parley.api import ApiState, create_app
from parley.api.runtime import gateway_startup
from parley.calls.states import TERMINAL
from parley.telephony.trunks import Trunk
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import run_sipp
from tests.telephony.conftest import ulaw_file

pytestmark = [pytest.mark.sip, pytest.mark.slow]
SCENARIOS = Path(__file__).parent / "scenarios"
KEY = {"X-API-Key": "test-key"}


class Platform:
    """A real `parley up`-style server: API + calls service + SIP gateway + dialer in this process."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"

    @property
    def calls(self) -> Any:
        return ApiState.of(self.app).calls

    @property
    def gateway(self) -> Any:
        return ApiState.of(self.app).gateway

    async def wait_final(self, call_id: str, timeout: float = 45.0) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, headers=KEY) as client:
            async def final() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(f"/api/calls/{call_id}")).json()
                return body if body["status"] in TERMINAL else None

            return await eventually(final, timeout_s=timeout, interval_s=0.1, what=f"call {call_id} ended")


@pytest.fixture
async def platform(settings, webhook_receiver) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    async def start(trunk_port: int, **updates: Any) -> Platform:
        s = settings.model_copy(update={"sip_port": 0, "webhook_url": webhook_receiver.url,
                                        "ring_timeout_s": 3.0, **updates})
        app = create_app(s, api_keys=["test-key"], startup=[gateway_startup(warm=True)])
        port = free_port(kind=1)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve()))
        await eventually(lambda: server.started, timeout_s=30, what="the API server started")
        trunk = Trunk.model_validate({"name": "carrier", "outbound": {
            "host": "127.0.0.1", "port": trunk_port, "username": "parley", "password": "secret",
            "caller_id": "+4930123456"}})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=KEY) as client:
            r = await client.put("/api/trunks/carrier", json=trunk.model_dump(mode="json"))
            assert r.status_code == 200, r.text
        return Platform(app, port)

    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[Any]] = []
    yield start
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def _callee_audio(tmp_path: Path, speech_wav: Any, *lines: tuple[float, str]) -> None:
    """callee.ulaw in tmp_path (SIPp's cwd): each line after `silence` seconds."""
    if not shutil.which("sox"):
        pytest.skip("sox is not installed")
    parts = []
    for i, (silence, text) in enumerate(lines):
        parts.append(ulaw_file(speech_wav(text, engine="piper"), tmp_path / f"part{i}.ulaw", lead_silence_s=silence))
    with open(tmp_path / "callee.ulaw", "wb") as out:
        for p in parts:
            out.write(p.read_bytes())


async def test_api_call_reaches_trunk_and_agent_converses(platform, webhook_receiver, speech_wav,
                                                          tmp_path: Path) -> None:
    _callee_audio(tmp_path, speech_wav, (5.5, "I would like to book an appointment for Tuesday."),
                  (6.0, "That's all, thank you. Goodbye."))
    trunk_port = free_port()
    sipp = asyncio.create_task(run_sipp(SCENARIOS / "trunk_conversation.xml", None, tmp_path, trunk_port,
                                        timeout=60))
    p = await platform(trunk_port)
    async with httpx.AsyncClient(base_url=p.url, headers=KEY) as client:
        r = await client.post("/api/outbound-call", json={
            "to_number": "+15551234567", "caller_name": "Parley Dental", "greeting": None,
            "llm_prompt": None})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "queued" and body["call_id"]
    detail = await p.wait_final(body["call_id"], timeout=60)
    result = await sipp
    assert result.code == 0, str(result)
    call = detail
    assert call["status"] == "completed", detail
    assert call["trunk"] == "carrier" and call["sip_call_id"]
    said = " ".join(t["text"] for t in detail["transcript"] if t["role"] == "caller").lower()
    replies = " ".join(t["text"] for t in detail["transcript"] if t["role"] == "agent").lower()
    assert "appointment" in said and "bye" in said, said
    assert "book" in replies and "goodbye" in replies, replies
    timeline = [e["type"] for e in detail["timeline"]]
    assert "sip.progress" in timeline  # 401 challenge / 180 ringing were recorded
    for event in ("call.queued", "call.ringing", "call.answered", "call.ended"):
        await webhook_receiver.wait_for(event)
    types = [t for t in webhook_receiver.types() if t.startswith("call.")]
    assert types.index("call.queued") < types.index("call.answered") < types.index("call.ended")


@pytest.mark.parametrize(("scenario", "status"), [("busy.xml", "busy"), ("no_answer.xml", "no_answer")])
async def test_busy_and_no_answer_follow_the_retry_policy(platform, tmp_path: Path, scenario: str,
                                                          status: str) -> None:
    trunk_port = free_port()
    sipp = asyncio.create_task(run_sipp(SCENARIOS / scenario, None, tmp_path, trunk_port, calls=2, timeout=40))
    p = await platform(trunk_port)
    async with httpx.AsyncClient(base_url=p.url, headers=KEY) as client:
        r = await client.post("/api/outbound-call", json={"to_number": "+15551234567", "max_retries": 1,
                                                          "retry_backoff_s": 0.5})
        assert r.status_code == 200, r.text
        call_id = r.json()["call_id"]
    detail = await p.wait_final(call_id, timeout=40)
    assert detail["status"] == status, detail
    assert detail["attempt"] == 2  # one retry, then the final status
    result = await sipp
    assert result.code == 0, str(result)


async def test_transfer_tool_sends_refer(platform, speech_wav, tmp_path: Path) -> None:
    _callee_audio(tmp_path, speech_wav, (5.5, "Can I speak to a person, please?"))
    trunk_port = free_port()
    sipp = asyncio.create_task(run_sipp(SCENARIOS / "transfer.xml", None, tmp_path, trunk_port, timeout=60))
    p = await platform(trunk_port)
    async with httpx.AsyncClient(base_url=p.url, headers=KEY) as client:
        r = await client.post("/api/outbound-call", json={"to_number": "+15551234567"})
        call_id = r.json()["call_id"]
    detail = await p.wait_final(call_id, timeout=60)
    result = await sipp
    assert result.code == 0, str(result)
    tools = [e for e in detail["timeline"] if e["type"] == "tool_call"]
    assert any(e["data"]["name"] == "transfer_call" and e["data"]["ok"] for e in tools), tools
    assert detail["status"] == "completed" and "transfer" in (detail["end_reason"] or "")


async def test_trunks_and_rules_api(platform) -> None:
    p = await platform(free_port())
    async with httpx.AsyncClient(base_url=p.url, headers=KEY) as client:
        listed = (await client.get("/api/trunks")).json()["trunks"]
        assert listed[0]["name"] == "carrier" and listed[0]["outbound"]["password"] == "********"
        status = (await client.get("/api/trunks/carrier/status", timeout=20)).json()
        assert status["name"] == "carrier" and status["active_calls"] == 0 and status["reachable"] is False
        assert "no answer to OPTIONS" in status["options"]
        bad = await client.put("/api/dispatch-rules/main", json={"name": "main", "agent": "nobody"})
        assert bad.status_code == 422 and "unknown agent 'nobody'" in bad.json()["message"]
        mismatch = await client.put("/api/dispatch-rules/main", json={"name": "other", "agent": "receptionist"})
        assert mismatch.status_code == 422 and "name" in mismatch.json()["message"]
        bad_trunk = await client.put("/api/trunks/x", json={"name": "x", "inbound": {"allowed_addresses": ["nope"]}})
        assert bad_trunk.status_code == 422 and "not an IP address or CIDR" in bad_trunk.json()["message"]
        ok = await client.put("/api/dispatch-rules/main", json={"name": "main", "prefixes": ["+49"],
                                                                "agent": "receptionist"})
        assert ok.status_code == 200 and ok.json()["changed"] is True
        assert (await client.get("/api/dispatch-rules")).json()["dispatch_rules"][0]["prefixes"] == ["+49"]
        assert [r.name for r in p.gateway.rules] == ["main"]  # the running gateway reloaded them
        assert (await client.delete("/api/dispatch-rules/main")).status_code == 200
        assert (await client.delete("/api/trunks/carrier")).status_code == 200
        missing = await client.delete("/api/trunks/carrier")
        assert missing.status_code == 404 and "unknown trunk 'carrier'" in missing.json()["message"]
        assert (await client.get("/api/trunks", headers={"X-API-Key": "wrong"})).status_code == 401
