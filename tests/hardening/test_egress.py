"""Defect 7 of issue 18, SSRF: `webhook_url`, HTTP tools and the incoming-call webhook could be pointed at
loopback (Redis's port included), private, link-local and metadata addresses, in IPv6, hex or integer
spellings, and Parley POSTed the call's JSON there (and retried). Now one policy (`support/egress.py`) is
applied after DNS resolution and on every request (so every redirect); the operator opens holes with
WEBHOOK_ALLOWED_HOSTS (hosts or CIDRs) and, in development, WEBHOOK_ALLOW_LOOPBACK.

The receivers are real HTTP servers on 127.0.0.1; "refused" is checked on both sides: the answer Parley
gives and the requests the receiver never got.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.api import create_app
from parley.engine.tools import ToolContext
from parley.support.egress import EgressPolicy, EgressRefused, address_refusal, check_url, literal_address
from parley.support.egress_http import EgressBlocked, guarded_client
from tests.engine.test_tools import box, line, tool_call
from tests.eventually import eventually

KEY = {"X-API-Key": "test-key"}

# Every way the probe reached this machine (or its neighbours) through webhook_url.
REFUSED_URLS = [
    "http://127.0.0.1:6379/",  # Redis's port
    "http://localhost:8000/hook",  # a name that resolves to loopback
    "http://2130706433/hook",  # decimal integer
    "http://0x7f000001/hook",  # hex integer
    "http://0177.0.0.1/hook",  # octal
    "http://127.1/hook",  # short form
    "http://[::1]/hook",  # IPv6 loopback
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/latest",  # mapped metadata address
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fe80::1]/hook",  # IPv6 link-local
    "http://10.0.0.5/hook",  # RFC 1918
    "http://192.168.1.1/hook",
    "http://172.16.0.1/hook",
    "http://[fd00::1]/hook",  # unique local
    "http://0.0.0.0:8000/hook",  # unspecified (reaches loopback on Linux)
    "http://100.64.0.1/hook",  # carrier-grade NAT
]


class Receiver:
    """A real HTTP server on 127.0.0.1 recording what it gets; answers 200, or 302 to `redirect_to`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.redirect_to: str | None = None
        box = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                box.requests.append((self.command, self.path, body))
                if box.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", box.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def strict(settings):  # type: ignore[no-untyped-def]
    """The production default: no loopback, nothing allowed beyond public addresses."""
    return settings.model_copy(update={"webhook_allow_loopback": False, "webhook_allowed_hosts": ""})


# --- the pure decisions -------------------------------------------------------------------------

@pytest.mark.parametrize(("host", "means"), [
    ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"), ("10.1", "10.0.0.1"), ("[::1]", "::1"), ("8.8.8.8", "8.8.8.8"),
    ("example.com", None), ("256.0.0.1", None), ("4294967296", None), ("1.2.3.4.5", None), ("0x", "0.0.0.0"),
])
def test_every_ipv4_spelling_means_what_the_resolver_reads(host: str, means: str | None) -> None:
    ip = literal_address(host)
    assert (str(ip) if ip else None) == means


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.9.8.7", "private"), ("fd12::1", "private"),
    ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("::ffff:127.0.0.1", "loopback"), ("64:ff9b::a00:1", "private"), ("2002:a00:1::", "private"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("100.64.0.1", "carrier-grade"),
    ("192.0.2.1", "private"), ("240.0.0.1", "private"),  # Python counts documentation/reserved as private
])
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    why = address_refusal(ipaddress.ip_address(address))
    assert why is not None and kind in why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_the_operator_opens_holes_by_host_and_cidr() -> None:
    policy = EgressPolicy.parse("hooks.internal, 10.20.0.0/16 fd00::/8 192.168.1.7")
    ip = ipaddress.ip_address
    assert policy.host_allowed("HOOKS.internal.") and not policy.host_allowed("other.internal")
    assert policy.refusal(ip("10.20.3.4")) is None and policy.refusal(ip("10.21.0.1")) is not None
    assert policy.refusal(ip("fd00::5")) is None and policy.refusal(ip("192.168.1.7")) is None
    assert policy.refusal(ip("::ffff:10.20.0.1")) is None  # the same address, mapped
    assert policy.refusal(ip("127.0.0.1")) is not None  # loopback needs its own switch
    assert EgressPolicy.parse("", allow_loopback=True).refusal(ip("127.0.0.1")) is None
    assert EgressPolicy.parse("", allow_loopback=True).refusal(ip("10.0.0.1")) is not None
    with pytest.raises(ValueError, match="not a CIDR"):
        EgressPolicy.parse("10.0.0.0/99")


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_check_url_refuses_after_resolving(url: str) -> None:
    with pytest.raises(EgressRefused) as info:
        await check_url(url, EgressPolicy())
    assert "refused unless allowed in WEBHOOK_ALLOWED_HOSTS" in info.value.reason


# --- at the API: 422 naming the field -------------------------------------------------------------

@pytest.fixture
async def api(strict) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    app = create_app(strict)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
            yield c


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_api_refuses_internal_webhook_urls_naming_the_field(api: httpx.AsyncClient, url: str) -> None:
    r = await api.post("/api/outbound-call", json={"to_number": "+14155550123", "webhook_url": url}, headers=KEY)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_error" and body["details"][0]["field"] == "webhook_url"
    assert "refused unless allowed" in body["message"]


async def test_api_takes_public_and_allowed_webhook_urls(strict, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    app = create_app(strict.model_copy(update={"webhook_allowed_hosts": "127.0.0.1/32"}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
            for url in ("https://8.8.8.8/hook", "https://hooks.example.invalid/x", receiver.url()):
                r = await c.post("/api/outbound-call", headers=KEY,
                                 json={"to_number": "+14155550123", "webhook_url": url})
                assert r.status_code == 200, (url, r.text)
            r = await c.post("/api/outbound-call", headers=KEY,
                             json={"to_number": "+14155550123", "webhook_url": receiver.url("[::1]")})
            assert r.status_code == 422  # ::1 is not in 127.0.0.1/32


# --- at send time: a delivery failure in the call's record ----------------------------------------

async def test_refused_webhook_is_a_failure_in_the_call_record(strict, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """WEBHOOK_URL (the operator's, not checked by the API) resolving to loopback: nothing is sent, no retry,
    and GET /api/calls/{id} shows the event dead with the reason."""
    app = create_app(strict.model_copy(update={"webhook_url": receiver.url("localhost")}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
            r = await c.post("/api/outbound-call", json={"to_number": "+14155550123"}, headers=KEY)
            call_id = r.json()["call_id"]

            async def dead() -> dict[str, Any] | None:
                record: dict[str, Any] = (await c.get(f"/api/calls/{call_id}", headers=KEY)).json()
                hooks = record.get("webhooks") or []
                return record if hooks and hooks[0]["status"] == "dead" else None

            record = await eventually(dead, timeout_s=10, what="the call.queued webhook given up")
    (hook,) = record["webhooks"]
    assert hook["event"] == "call.queued" and hook["attempts"] == 1
    assert "refused by the egress policy" in hook["last_error"] and "127.0.0.1" in hook["last_error"]
    assert receiver.requests == []


async def test_allowed_webhook_is_delivered_and_shown(strict, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    app = create_app(strict.model_copy(update={"webhook_allowed_hosts": "localhost"}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as c:
            r = await c.post("/api/outbound-call", headers=KEY,
                             json={"to_number": "+14155550123", "webhook_url": receiver.url("localhost")})
            call_id = r.json()["call_id"]

            async def delivered() -> dict[str, Any] | None:
                record: dict[str, Any] = (await c.get(f"/api/calls/{call_id}", headers=KEY)).json()
                return record if [h["status"] for h in record["webhooks"]] == ["delivered"] else None

            await eventually(delivered, timeout_s=10, what="the call.queued webhook delivered")
    assert json.loads(receiver.requests[0][2])["type"] == "call.queued"


# --- every redirect is checked ----------------------------------------------------------------------

async def test_redirects_to_internal_addresses_are_refused(receiver: Receiver) -> None:
    inner = Receiver()
    try:
        receiver.redirect_to = inner.url("0x7f000002", "/secret")  # loopback 127.0.0.2, spelt in hex
        policy = EgressPolicy.parse("127.0.0.1/32")  # the first hop only is allowed (not 0x7f000001's)
        async with guarded_client(policy, follow_redirects=True) as client:
            with pytest.raises(EgressBlocked, match="0x7f000002 means 127.0.0.2"):
                await client.post(receiver.url(), json={"a": 1})
        assert len(receiver.requests) == 1 and inner.requests == []
        # the same redirect to an allowed place is followed
        receiver.redirect_to = inner.url("127.0.0.1", "/fine")
        async with guarded_client(EgressPolicy.parse("127.0.0.1"), follow_redirects=True) as client:
            r = await client.get(receiver.url())
        assert r.status_code == 200 and inner.requests[0][1] == "/fine"
    finally:
        inner.close()


async def test_the_checked_address_is_the_one_connected_to(receiver: Receiver) -> None:
    """The transport connects to the address it checked (no second lookup to rebind), keeping the Host."""
    async with guarded_client(EgressPolicy(hosts=frozenset(), allow_loopback=True)) as client:
        r = await client.get(receiver.url("localhost", "/pinned"))
    assert r.status_code == 200 and receiver.requests[0][1] == "/pinned"


# --- HTTP tools ----------------------------------------------------------------------------------------

async def test_http_tool_to_an_internal_address_is_refused(receiver: Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_ALLOW_LOOPBACK", raising=False)
    monkeypatch.delenv("WEBHOOK_ALLOWED_HOSTS", raising=False)
    spec = {"name": "lookup", "type": "http", "method": "POST", "url": receiver.url("[::ffff:127.0.0.1]")}
    outcome = await box(spec).run(tool_call("lookup", q=1), ToolContext(line()))
    assert not outcome.ok and "refused by the egress policy" in outcome.result
    assert receiver.requests == []


# --- the incoming-call webhook ---------------------------------------------------------------------------

@pytest.mark.sip
async def test_incoming_call_webhook_to_loopback_is_not_asked(phone_stack, webhook_receiver,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    """The receiver would reject the call; refused by the policy it is never asked, the rule answers."""
    from tests.telephony.test_inbound_sipp import _ok_call

    webhook_receiver.answer = {"action": "reject", "code": 486}
    stack = await phone_stack(incoming_call_webhook_url=webhook_receiver.url, incoming_call_webhook_timeout_s=1.0,
                              webhook_allow_loopback=False)
    await _ok_call(stack, tmp_path)
    assert [e for e in webhook_receiver.events if e.get("type") == "call.incoming"] == []
