"""API skeleton: health, docs, authentication and the JSON error shape."""

from __future__ import annotations

import httpx
import pytest

from parley.api import ApiState, create_app


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
    public = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley") as c:
        for route in app.routes:
            path = getattr(route, "path", "")
            if path in public or not path:
                continue
            for method in sorted(getattr(route, "methods", {"GET"}) - {"HEAD", "OPTIONS"}):
                url = path.replace("{", "").replace("}", "")
                r = await c.request(method, url)
                assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a key"
