"""The calls REST API, through the real app (lifespan included: migrations, queue, webhook sender)."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from parley.api import ApiState, create_app

KEY = {"X-API-Key": "test-key"}
ORIGINAL = {"to_number": "+14155550123", "caller_name": "Ada", "llm_prompt": "You are brief.",
            "greeting": "Hi Ada!"}


@pytest.fixture
async def app(settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
        yield c


async def queue_call(client: httpx.AsyncClient, **extra) -> str:  # type: ignore[no-untyped-def]
    r = await client.post("/api/outbound-call", json={**ORIGINAL, **extra}, headers=KEY)
    assert r.status_code == 200, r.text
    return r.json()["call_id"]


def field_of(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_error" and body["message"]
    return [d["field"] for d in body["details"]]


ROUTES = [
    ("POST", "/api/outbound-call", ORIGINAL),
    ("GET", "/api/calls", None),
    ("GET", "/api/calls/some-id", None),
    ("POST", "/api/calls/some-id/cancel", None),
    ("GET", "/api/calls/some-id/transcript", None),
    ("GET", "/api/calls/some-id/recording", None),
    ("POST", "/api/webhook", {"type": "ping"}),
    ("GET", "/metrics", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}], ids=["missing-key", "invalid-key"])
async def test_every_route_needs_the_key(client, method, path, body, headers) -> None:  # type: ignore[no-untyped-def]
    r = await client.request(method, path, json=body, headers=headers)
    assert r.status_code == 401
    assert "X-API-Key" in r.json()["message"]


async def test_original_outbound_body_is_queued(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/outbound-call", json=ORIGINAL, headers=KEY)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "queued" and body["call_id"] and "+14155550123" in body["message"]
    call = (await client.get(f"/api/calls/{body['call_id']}", headers=KEY)).json()
    assert call["status"] == "queued" and call["direction"] == "outbound" and call["agent"] == "receptionist"
    assert call["caller_name"] == "Ada" and call["llm_prompt"] == "You are brief." and call["greeting"] == "Hi Ada!"
    assert [e["data"]["to"] for e in call["timeline"]] == ["queued"] and call["transcript"] == []


async def test_extended_outbound_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/outbound-call", headers=KEY, json={
        "to_number": "+49 30 1234 5678", "agent": "German Assistant", "from_number": "+4930999",
        "variables": {"name": "Jonas"}, "metadata": {"ticket": 42}, "schedule_at": "2030-01-01T09:00:00Z",
        "max_retries": 2, "webhook_url": "https://example.invalid/hook"})
    assert r.status_code == 200, r.text
    assert r.json()["schedule_at"].startswith("2030-01-01T09:00:00")
    call = (await client.get(f"/api/calls/{r.json()['call_id']}", headers=KEY)).json()
    assert call["to_number"] == "+493012345678" and call["agent"] == "german_assistant"
    assert call["variables"] == {"name": "Jonas"} and call["metadata"] == {"ticket": 42}
    assert call["max_retries"] == 2 and call["webhook_url"] == "https://example.invalid/hook"


@pytest.mark.parametrize(("patch", "field"), [
    ({"to_number": "0301234"}, "to_number"),
    ({"to_number": "+0123"}, "to_number"),
    ({"to_number": None}, "to_number"),
    ({"from_number": "abc"}, "from_number"),
    ({"max_retries": -1}, "max_retries"),
    ({"schedule_at": "next tuesday"}, "schedule_at"),
    ({"webhook_url": "ftp://x"}, "webhook_url"),
    ({"variables": [1, 2]}, "variables"),
    ({"colour": "blue"}, "colour"),
])
async def test_bad_outbound_bodies_name_the_field(client, patch, field) -> None:  # type: ignore[no-untyped-def]
    body = {k: v for k, v in {**ORIGINAL, **patch}.items() if v is not None}
    r = await client.post("/api/outbound-call", json=body, headers=KEY)
    assert field in field_of(r)


async def test_unknown_agent_and_broken_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/outbound-call", json={**ORIGINAL, "agent": "nobody"}, headers=KEY)
    assert field_of(r) == ["agent"] and "unknown agent 'nobody'" in r.json()["message"]
    r = await client.post("/api/outbound-call", content=b"{not json", headers={**KEY, "Content-Type": "application/json"})
    assert r.status_code == 422


async def test_list_filters_and_cursor(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    ids = [await queue_call(client, to_number=f"+1415555{i:04d}") for i in range(5)]
    german = await queue_call(client, agent="german_assistant")
    await client.post(f"/api/calls/{ids[0]}/cancel", headers=KEY)

    seen, cursor = [], None
    while True:
        r = await client.get("/api/calls", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=KEY)
        assert r.status_code == 200
        seen += [c["id"] for c in r.json()["calls"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert seen == [german, *reversed(ids)]
    r = await client.get("/api/calls", params={"status": "canceled"}, headers=KEY)
    assert [c["id"] for c in r.json()["calls"]] == [ids[0]]
    r = await client.get("/api/calls", params={"agent": "german_assistant", "direction": "outbound"}, headers=KEY)
    assert [c["id"] for c in r.json()["calls"]] == [german]
    r = await client.get("/api/calls", params={"since": "2999-01-01T00:00:00Z"}, headers=KEY)
    assert r.json()["calls"] == []
    assert field_of(await client.get("/api/calls", params={"status": "flying"}, headers=KEY)) == ["status"]
    assert field_of(await client.get("/api/calls", params={"cursor": "garbage!"}, headers=KEY)) == ["cursor"]
    assert field_of(await client.get("/api/calls", params={"limit": 0}, headers=KEY)) == ["limit"]
    assert field_of(await client.get("/api/calls", params={"since": "yesterday"}, headers=KEY)) == ["since"]


async def test_call_detail_transcript_and_cancel(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    service = ApiState.of(app).calls
    call_id = await queue_call(client)
    await service.store.transition(call_id, "dialing")
    await service.transition(call_id, "ringing")
    await service.transition(call_id, "in_progress")
    await service.add_transcript(call_id, "agent", "Hello, this is Ava.")
    await service.add_transcript(call_id, "caller", "Please cancel my appointment.")

    detail = (await client.get(f"/api/calls/{call_id}", headers=KEY)).json()
    assert detail["status"] == "in_progress" and detail["answered_at"]
    assert [t["role"] for t in detail["transcript"]] == ["agent", "caller"]
    r = await client.get(f"/api/calls/{call_id}/transcript", headers=KEY)
    assert [t["text"] for t in r.json()["transcript"]] == ["Hello, this is Ava.", "Please cancel my appointment."]
    text = (await client.get(f"/api/calls/{call_id}/transcript", params={"format": "text"}, headers=KEY))
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert lines[0].endswith("agent: Hello, this is Ava.") and lines[1].endswith("caller: Please cancel my appointment.")
    assert field_of(await client.get(f"/api/calls/{call_id}/transcript", params={"format": "xml"},
                                     headers=KEY)) == ["format"]

    r = await client.post(f"/api/calls/{call_id}/cancel", headers=KEY)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    again = await client.post(f"/api/calls/{call_id}/cancel", headers=KEY)
    assert again.status_code == 409 and "already canceled" in again.json()["message"]
    conversation = service.settings.data_dir / "conversations" / f"{call_id}.json"
    assert conversation.is_file() and "Please cancel my appointment." in conversation.read_text()

    for path in ("", "/transcript", "/recording"):
        r = await client.get(f"/api/calls/no-such-call{path}", headers=KEY)
        assert r.status_code == 404 and "no-such-call" in r.json()["message"]
    assert (await client.post("/api/calls/no-such-call/cancel", headers=KEY)).status_code == 404


async def test_recording(client: httpx.AsyncClient, app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    call_id = await queue_call(client)
    r = await client.get(f"/api/calls/{call_id}/recording", headers=KEY)
    assert r.status_code == 404 and "has no recording" in r.json()["message"]
    wav = tmp_path / "rec.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype(np.int16).tobytes())
    await ApiState.of(app).calls.set_recording(call_id, wav)
    r = await client.get(f"/api/calls/{call_id}/recording", headers=KEY)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content == wav.read_bytes()
    wav.unlink()
    r = await client.get(f"/api/calls/{call_id}/recording", headers=KEY)
    assert r.status_code == 404 and "no longer on disk" in r.json()["message"]


async def test_inbound_webhook_events(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/webhook", json={"type": "ping"}, headers=KEY)
    assert r.status_code == 200 and r.json() == {"type": "pong"}
    call_id = await queue_call(client)
    r = await client.post("/api/webhook", headers=KEY,
                          json={"type": "disposition", "call_id": call_id, "data": {"disposition": "sale"}})
    assert r.status_code == 200 and r.json()["status"] == "stored"
    await client.post("/api/webhook", headers=KEY,
                      json={"type": "note", "call_id": call_id, "data": {"text": "call back Friday"}})
    timeline = (await client.get(f"/api/calls/{call_id}", headers=KEY)).json()["timeline"]
    assert [(e["type"], e["data"]) for e in timeline[1:]] == [
        ("webhook.disposition", {"disposition": "sale"}), ("webhook.note", {"text": "call back Friday"})]

    assert field_of(await client.post("/api/webhook", json={"type": "explode"}, headers=KEY)) == ["type"]
    assert field_of(await client.post("/api/webhook", json={"call_id": call_id}, headers=KEY)) == ["type"]
    assert field_of(await client.post("/api/webhook", json={"type": "note", "data": {"text": "x"}},
                                      headers=KEY)) == ["call_id"]
    assert field_of(await client.post("/api/webhook", json={"type": "note", "call_id": call_id},
                                      headers=KEY)) == ["data.text"]
    assert field_of(await client.post("/api/webhook", json=["ping"], headers=KEY)) == ["body"]
    r = await client.post("/api/webhook", json={"type": "note", "call_id": "nope", "data": {"text": "x"}},
                          headers=KEY)
    assert r.status_code == 404


async def test_metrics_and_health(client: httpx.AsyncClient) -> None:
    from parley.calls.metrics import observe_turn

    await queue_call(client)
    observe_turn({"stt_final_ms": 180.0, "llm_first_token_ms": 420.0, "voice_to_voice_ms": 910.0,
                  "silence_waited_ms": 240.0, "detector": "finished", "probability": 0.93,
                  "preemptive_restarts": 1, "llm_prefetched": True, "tts_prefetched": True})
    observe_turn({"silence_waited_ms": 700.0, "detector": "silence", "model_busy": True})
    r = await client.get("/metrics", headers=KEY)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'parley_calls{status="queued"} 1.0' in text
    assert "parley_queue_depth 1.0" in text
    assert 'parley_turn_latency_seconds_count{stage="voice_to_voice"}' in text
    assert 'parley_turn_latency_seconds_count{stage="silence_waited"}' in text
    assert 'parley_turn_endings_total{detector="finished"}' in text
    assert "parley_turn_model_probability_count" in text and "parley_preemptive_restarts_total" in text
    assert "parley_dial_outcomes_total" in text and "parley_webhook_deliveries_total" in text
    for prefetched in ("parley_llm_prefetched_turns_total", "parley_tts_prefetched_turns_total",
                       "parley_turn_model_busy_turns_total"):
        count = next(line for line in text.splitlines() if line.startswith(prefetched + " "))
        assert float(count.split()[1]) >= 1, count
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy"
    assert health["services"]["db"]["ok"] and health["services"]["db"]["status"] == "sqlite ok"
    assert health["services"]["queue"]["status"] == "local, 1 waiting"
