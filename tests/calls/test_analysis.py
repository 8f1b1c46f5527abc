"""Post-call analysis with the offline scripted LLM: the agent's intents and slots fill its schema, the
result is stored on the call, exported, and sent once as a signed `call.analyzed` webhook (real HTTP
receiver); `POST /api/calls/{id}/analyze` re-runs it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from parley.agents import AgentRegistry
from parley.api import create_app
from parley.calls.service import CallsService
from parley.calls.webhooks import RetryTiming, verify
from tests.conftest import ROOT
from tests.eventually import eventually

SCHEMA = {"type": "object", "properties": {
    "appointment_day": {"type": "string", "enum": ["monday", "tuesday", "wednesday", "thursday", "friday"]},
    "callback_requested": {"type": "boolean"}}, "required": ["callback_requested"]}


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "agents"
    folder.mkdir()
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec["intents"].append({"name": "callback", "keywords": ["call me back", "callback", "ring me"],
                            "examples": ["please call me back", "can you call me back later"],
                            "reply": "We'll call you back."})
    spec["analysis"] = {"summary_prompt": "Summarise the call.", "schema": SCHEMA,
                        "success_rubric": "An appointment was booked.", "success_intents": ["book_appointment"]}
    (folder / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture
def receiver() -> Iterator[list[tuple[dict[str, str], bytes]]]:
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append((dict(self.headers), self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    got.append(({"url": f"http://127.0.0.1:{server.server_address[1]}/hook"}, b""))
    yield got
    server.shutdown()


def _analyzed(got: list[tuple[dict[str, str], bytes]]) -> list[tuple[dict[str, str], bytes]]:
    return [(h, b) for h, b in got[1:] if h.get("X-Parley-Event") == "call.analyzed"]


async def test_analysis_after_the_call_is_stored_exported_and_sent_once_signed(
        settings, agents_dir: Path, receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = receiver[0][0]["url"]
    s = settings.model_copy(update={"agents_dir": agents_dir, "webhook_url": url,
                                    "webhook_secret": SecretStr("whsec-test")})
    service = await CallsService.open(s, agents=AgentRegistry.load(agents_dir, ROOT / "prompts"),
                                      webhook_timing=RetryTiming(base_s=0.05, factor=2, max_attempts=3, timeout_s=5),
                                      webhook_poll_s=0.05)
    try:
        call = await service.create_call(to_number="+4930123456", direction="inbound", agent="receptionist",
                                         status="in_progress")
        await service.add_transcript(call.id, "agent", "Hello, you've reached Parley Dental.")
        await service.add_transcript(call.id, "caller", "I would like to book an appointment for Tuesday.")
        await service.add_event(call.id, "tool_call", {"name": "end_call", "ok": True})
        await service.add_transcript(call.id, "caller", "And please call me back to confirm.")
        await service.finish(call.id, "completed", "caller hung up")

        first = await eventually(lambda: _analyzed(receiver), timeout_s=15, what="a call.analyzed webhook")
        headers, raw = first[0]
        assert verify(s.webhook_secret.get_secret_value(), headers["X-Parley-Timestamp"], raw,
                      headers["X-Parley-Signature"])
        body = json.loads(raw)
        analysis = body["analysis"]
        jsonschema.validate(analysis["data"], SCHEMA)
        assert analysis["data"] == {"appointment_day": "tuesday", "callback_requested": True}
        assert analysis["success"] is True and analysis["valid"] is True and analysis["by"] == "scripted"
        assert analysis["summary"].startswith("The caller wanted to book appointment (day: tuesday); then callback")
        assert [t["role"] for t in body["transcript"]] == ["agent", "caller", "caller"]
        assert body["tool_calls"] == [{"name": "end_call", "ok": True}]
        assert body["outcome"] == {"status": "completed", "end_reason": "caller hung up"}

        stored = await service.get_call(call.id)
        assert stored is not None and stored.metadata["analysis"]["data"]["appointment_day"] == "tuesday"
        exported = json.loads((s.data_dir / "conversations").rglob(f"*{call.id}*").__next__().read_text())
        assert exported["metadata"]["analysis"]["success"] is True

        again = await service.analyze(call.id)  # a re-run: stored again, not sent again
        assert again["data"] == analysis["data"]
        await service.store.record_analysis(call.id, again, lambda d, a: "{}")  # still only once
        rows = [w for w in await service.store.webhooks_for(call.id) if w["event"] == "call.analyzed"]
        assert len(rows) == 1
    finally:
        await service.close()


async def test_analyze_route(settings, agents_dir: Path) -> None:  # type: ignore[no-untyped-def]
    s = settings.model_copy(update={"agents_dir": agents_dir})
    app = create_app(s)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley",
                                     headers={"X-API-Key": "test-key"}) as client:
            service = app.state.parley.calls
            call = await service.create_call(to_number="+4930123456", direction="inbound", agent="receptionist",
                                             status="in_progress")
            early = await client.post(f"/api/calls/{call.id}/analyze")
            assert early.status_code == 409 and "after the call ends" in early.json()["message"]
            await service.add_transcript(call.id, "caller", "When are you open?")
            await service.finish(call.id, "completed")
            r = await client.post(f"/api/calls/{call.id}/analyze", params={"webhook": True})
            assert r.status_code == 200, r.text
            a = r.json()["analysis"]
            assert a["success"] is False and a["data"] == {"callback_requested": False}
            assert "opening hours" in a["summary"]
            shown = (await client.get(f"/api/calls/{call.id}")).json()
            assert shown["metadata"]["analysis"]["summary"] == a["summary"]
            assert any(e["type"] == "analysis" for e in shown["timeline"])
            assert (await client.post("/api/calls/nope/analyze")).status_code == 404
