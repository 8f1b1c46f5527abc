"""API skeleton: health, docs, authentication and the JSON error shape."""

from __future__ import annotations

import asyncio

import httpx
from fastapi.routing import iter_route_contexts
import pytest
from fastapi import FastAPI

from parley.api import ApiState, create_app
from parley.api.health import HealthRegistry


@pytest.fixture
def app(settings):  # type: ignore[no-untyped-def]
    return create_app(settings)


@pytest.fixture
async def client(app):  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley") as c:
        yield c


async def test_health_is_public_and_healthy(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["services"]["agents"]["ok"] is True


async def test_health_degraded_names_failing_part(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    async def broken() -> str:
        raise ConnectionError("connection refused on 127.0.0.1:6379")

    ApiState.of(app).health.add("redis", broken)
    r = await client.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    assert body["failing"] == ["redis"]
    assert "6379" in body["services"]["redis"]["status"]


async def test_docs_and_openapi_are_public(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await client.get("/openapi.json")).json()
    assert "/api/agents" in spec["paths"] and "/health" in spec["paths"]


@pytest.mark.parametrize("headers, message", [({}, "missing X-API-Key"), ({"X-API-Key": "wrong"}, "invalid")])
async def test_protected_route_needs_key(client: httpx.AsyncClient, headers: dict, message: str) -> None:
    r = await client.get("/api/agents", headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["error"] == "unauthorized" and message in body["message"]


async def test_protected_route_with_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/agents", headers={"X-API-Key": "test-key"})
    assert r.status_code == 200
    keys = {a["key"] for a in r.json()["agents"]}
    assert "receptionist" in keys
    one = await client.get("/api/agents/receptionist", headers={"X-API-Key": "test-key"})
    assert one.json()["spec"]["components"]["llm"]["provider"] == "scripted"


async def test_unknown_agent_and_route_are_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/agents/nobody", headers={"X-API-Key": "test-key"})
    assert r.status_code == 404 and "unknown agent 'nobody'" in r.json()["message"]
    r = await client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_only_public_routes_skip_auth(app) -> None:  # type: ignore[no-untyped-def]
    """Every route except /health and the docs answers 401 without a key."""
    public = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
              "/livekit/webhook",  # LiveKit signs its webhooks (JWT with the body's hash): 401 when unsigned
              "/", "/ui",  # redirects to /ui/: no data
              "/ui/sign-in"}  # the dashboard's sign-in form and its POST: how a browser gets a session
    # (the dashboard's code and styles, /ui/static/*, are a mount without methods: public, and hold no data)
    # Twilio cannot send X-API-Key: its webhooks are authenticated by X-Twilio-Signature (403 without),
    # its Media Streams WebSocket by the single-use token of our signed TwiML (tests/twilio).
    public |= {"/twilio/voice", "/twilio/status", "/twilio/stream"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley") as c:
        walked = 0
        # Routes added with include_router are only listed by iter_route_contexts (FastAPI >= 0.165).
        for route in iter_route_contexts(app.routes):
            path = route.path
            if path in public or not path or not route.methods:
                continue
            walked += 1
            for method in sorted(set(route.methods) - {"HEAD", "OPTIONS"}):
                url = path.replace("{", "").replace("}", "")
                r = await c.request(method, url)
                if path.startswith("/ui/") and method == "GET":  # dashboard pages send a browser to sign in
                    assert r.status_code == 303 and r.headers["location"].startswith("/ui/sign-in"), \
                        f"{method} {path} answered {r.status_code} without a session"
                    continue
                assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a key"
        assert walked >= 15, f"the walk saw only {walked} routes"


async def test_webhook_ping_needs_no_calls_service(client: httpx.AsyncClient) -> None:
    """The app's lifespan has not run here: ping still answers; a stored event says why it cannot be kept."""
    r = await client.post("/api/webhook", json={"type": "ping"}, headers={"X-API-Key": "test-key"})
    assert r.status_code == 200 and r.json() == {"type": "pong"}
    r = await client.post("/api/webhook", json={"type": "external", "call_id": "c1"},
                          headers={"X-API-Key": "test-key"})
    assert r.status_code == 503 and "calls service is not running" in r.json()["message"]


async def test_health_registry_bounds_each_check() -> None:
    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    async def fine() -> str:
        return "ok"

    registry = HealthRegistry(timeout_s=0.05)
    registry.add("slow", slow)
    registry.add("fine", fine)
    report = await registry.report()
    assert report.failing == ["slow"]
    assert report.to_dict()["services"] == {"slow": {"ok": False, "status": "no answer within 0.05s"},
                                            "fine": {"ok": True, "status": "ok"}}


def test_state_of_a_foreign_app_names_the_factory() -> None:
    with pytest.raises(RuntimeError, match="create_app"):
        ApiState.of(FastAPI())
