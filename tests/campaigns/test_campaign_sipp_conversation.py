"""Campaign calls that get talked to, against SIPp callees: a voicemail whose agent's AMD action is
`continue` (the machine is recorded, the agent greets anyway), and a person who books an appointment, after
which exactly one signed `call.analyzed` webhook reaches a real HTTP receiver, checked as a user would:
the HMAC from the docs (`docs/calls.md`), the body against the agent's own schema."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from tests.campaigns.conftest import FakeClock
from tests.campaigns.sipp_platform import (
    SCENARIOS,
    amd_agents,
    callee_lines,
    campaign_done,
    hello,
    machine,
    receptionist,
)
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import sipp_server

pytestmark = [pytest.mark.sip, pytest.mark.slow]
SECRET = "whsec-campaign-test"
SCHEMA = {"type": "object", "properties": {
    "appointment_day": {"type": "string", "enum": ["monday", "tuesday", "wednesday", "thursday", "friday"]},
    "callback_requested": {"type": "boolean"}}, "required": ["appointment_day", "callback_requested"]}
GREETING = "Hello, this is Ava from Parley Dental. Do you have a moment?"


class Receiver:
    """A real HTTP server on 127.0.0.1 keeping every request's headers and raw body."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                got.append((dict(self.headers), self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/parley"

    def of(self, event: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in list(self.got) if h.get("X-Parley-Event") == event]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    threading.Thread(target=r.server.serve_forever, daemon=True).start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check from docs/calls.md: HMAC-SHA256 over `timestamp + "." + raw body`, recent."""
    ts = headers["X-Parley-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Parley-Signature"], expected) and abs(time.time() - int(ts)) < 300


async def test_amd_continue_records_the_machine_and_the_agent_talks(platform, speech_wav,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    hello(tmp_path, speech_wav)
    machine(tmp_path, speech_wav)
    trunk_port = free_port()
    sipp = await sipp_server(SCENARIOS / "voicemail.xml", tmp_path, trunk_port, calls=1, timeout=90)
    clock = FakeClock(datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    # the machine talks over the greeting and does not listen: the greeting is not interrupted; once
    # nobody speaks for 2 s the agent says goodbye and hangs up (no reminders)
    agents = amd_agents(tmp_path, "continue", allow_interruptions=False, idle={
        "reminder_after_s": 2, "reminders": [], "max_reminders": 0, "hangup_message": "Goodbye."})
    p = await platform(trunk_port, clock, agents_dir=agents)
    async with p.client() as client:
        r = await client.post("/api/campaigns", json={"agent": "receptionist", "csv": "number,name\n+4940400003,Mia\n",
                                                      "start": True, "retry": {"voicemail": {"max_attempts": 1}}})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        final = await campaign_done(client, cid, timeout=60)
        assert final["outcomes"] == {"voicemail": 1}, final  # the machine is the campaign's outcome
        calls = (await client.get("/api/calls", params={"campaign": cid})).json()["calls"]
        assert len(calls) == 1
        call = (await client.get(f"/api/calls/{calls[0]['id']}")).json()
    amd = call["metadata"]["amd"]
    assert amd["result"] == "machine" and amd["action"] == "continue", amd
    types = [e["type"] for e in call["timeline"]]
    assert "amd" in types and "amd.beep" not in types  # decided, and did not wait for the beep
    said = [t for t in call["transcript"] if t["role"] == "agent"]
    assert said and said[0]["text"] == GREETING, said  # the conversation's greeting, not a voicemail message
    assert not any(t["metadata"].get("voicemail") for t in said)
    decided_at = next(e["at"] for e in call["timeline"] if e["type"] == "amd")
    assert datetime.fromisoformat(said[0]["at"]) >= datetime.fromisoformat(decided_at)
    assert call["status"] == "completed" and "answering machine" not in (call["end_reason"] or ""), call["end_reason"]
    result = await sipp
    assert result.code == 0, str(result)


async def test_campaign_call_is_analyzed_and_sent_once_signed(platform, speech_wav, receiver: Receiver,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    callee_lines(tmp_path, speech_wav, (5.5, "I would like to book an appointment for Tuesday."),
                 (6.0, "That's all, thank you. Goodbye."))
    trunk_port = free_port()
    sipp = await sipp_server(SCENARIOS / "talker.xml", tmp_path, trunk_port, calls=1, timeout=90)
    clock = FakeClock(datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    agents = receptionist(tmp_path, analysis={
        "summary_prompt": "Summarise the call.", "schema": SCHEMA, "success_rubric": "An appointment was booked.",
        "success_intents": ["book_appointment"]})
    p = await platform(trunk_port, clock, agents_dir=agents, webhook_secret=SecretStr(SECRET))
    async with p.client() as client:
        r = await client.post("/api/campaigns", json={"agent": "receptionist", "csv": "number,name\n+4940100007,Ada\n",
                                                      "start": True, "webhook_url": receiver.url})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        final = await campaign_done(client, cid, timeout=75)
        assert final["outcomes"] == {"completed": 1}, final
        call_id = (await client.get("/api/calls", params={"campaign": cid})).json()["calls"][0]["id"]
        sent = await eventually(lambda: receiver.of("call.analyzed"), timeout_s=30, what="a call.analyzed webhook")

        async def delivered() -> dict[str, Any] | None:
            call: dict[str, Any] = (await client.get(f"/api/calls/{call_id}")).json()
            rows = [w for w in call["webhooks"] if w["event"] == "call.analyzed"]
            return call if rows and all(w["status"] == "delivered" for w in rows) else None

        stored = await eventually(delivered, timeout_s=10, what="call.analyzed marked delivered")

    assert len(sent) == 1, [h.get("X-Parley-Event-Id") for h, _ in sent]
    headers, raw = sent[0]
    assert signed_by(SECRET, headers, raw), headers
    assert not signed_by("another-secret", headers, raw)
    body = json.loads(raw)
    assert body["type"] == "call.analyzed" and body["call"]["id"] == call_id
    assert body["call"]["metadata"]["campaign_id"] == cid
    caller = " ".join(t["text"] for t in body["transcript"] if t["role"] == "caller").lower()
    agent = " ".join(t["text"] for t in body["transcript"] if t["role"] == "agent").lower()
    assert "appointment" in caller and "bye" in caller, caller
    assert "book" in agent and "goodbye" in agent, agent
    assert [t["name"] for t in body["tool_calls"]] == ["end_call"], body["tool_calls"]
    assert body["outcome"]["status"] == "completed", body["outcome"]
    analysis = body["analysis"]
    schema = yaml.safe_load((agents / "receptionist.yaml").read_text())["analysis"]["schema"]
    jsonschema.validate(analysis["data"], schema)  # the agent's schema, as configured
    assert analysis["data"] == {"appointment_day": "tuesday", "callback_requested": False}, analysis
    assert analysis["valid"] is True and analysis["success"] is True, analysis
    assert "book appointment" in analysis["summary"], analysis["summary"]
    # sent once: one call.analyzed in the call's outbox (delivered), one received; it carries what is stored
    assert len(receiver.of("call.analyzed")) == 1
    assert [w["event"] for w in stored["webhooks"]].count("call.analyzed") == 1, stored["webhooks"]
    assert stored["metadata"]["analysis"] == analysis
    result = await sipp
    assert result.code == 0, str(result)
