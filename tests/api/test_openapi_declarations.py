"""The individual mismatches schemathesis found (issue 18), each pinned by a plain request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from parley.api import create_app

KEY = {"X-API-Key": "test-key"}


@pytest.fixture
async def client(settings) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
            yield c


async def test_405_allow_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    for path in ("/api/trunks/x", "/api/dispatch-rules/x"):
        r = await client.request("OPTIONS", path, headers=KEY)
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, PUT"


async def test_every_status_a_route_answers_is_documented(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    for path, status in [("/api/calls/{call_id}", "404"), ("/api/calls/{call_id}/cancel", "409"),
                         ("/api/agents/{name}", "404"), ("/api/trunks/{name}/status", "404"),
                         ("/api/outbound-call", "413"), ("/api/outbound-call", "401")]:
        operation = next(iter(doc["paths"][path].values()))
        assert status in operation["responses"], (path, status)
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    text = doc["paths"]["/api/calls/{call_id}/transcript"]["get"]["responses"]["200"]["content"]
    assert set(text) == {"application/json", "text/plain"}
    agent = doc["components"]["schemas"]["OutboundCallRequest"]["properties"]["agent"]["anyOf"][0]
    assert "receptionist" in agent["enum"]


@pytest.mark.parametrize(("params", "field"), [({"until": "0.5"}, "until"), ({"since": "2026-01-01"}, "since"),
                                               ({"cursor": "czEyMw"}, "cursor")])
async def test_list_query_takes_what_the_schema_says_only(client: httpx.AsyncClient, params: dict, field: str
                                                          ) -> None:
    r = await client.get("/api/calls", params=params, headers=KEY)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == field
    ok = await client.get("/api/calls", params={"since": "2026-01-01T00:00:00Z", "cursor": "c99"}, headers=KEY)
    assert ok.status_code == 200


@pytest.mark.parametrize(("extra", "field"), [({"max_retries": "3"}, "max_retries"), ({"max_retries": True}, "max_retries"),
                                              ({"schedule_at": 1767225600}, "schedule_at"), ({"to_number": "+١٢٣٤٥"}, "to_number"),
                                              ({"webhook_url": "http://[3]/"}, "webhook_url")])
async def test_outbound_call_refuses_what_the_schema_refuses(client: httpx.AsyncClient, extra: dict, field: str
                                                             ) -> None:
    r = await client.post("/api/outbound-call", json={"to_number": "+14155550123", **extra}, headers=KEY)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == field, r.text


async def test_schema_valid_odd_values_are_accepted_not_500(client: httpx.AsyncClient) -> None:
    for extra in ({"max_retries": 5.0}, {"webhook_url": "https://" + "a" * 70 + "/x"},
                  {"webhook_url": "HTTP://hooks.example.invalid:8443/p?q#f"}):
        r = await client.post("/api/outbound-call", json={"to_number": "+1 (415) 555-0123", **extra}, headers=KEY)
        assert r.status_code == 200, (extra, r.text)


async def test_webhook_events_have_one_schema_per_type(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    body = doc["paths"]["/api/webhook"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    kinds = [b["properties"]["type"]["enum"][0] for b in body["oneOf"]]
    assert kinds == ["ping", "note", "disposition", "external"]
    note = body["oneOf"][1]
    assert note["required"] == ["type", "call_id", "data"] and note["properties"]["data"]["required"] == ["text"]
