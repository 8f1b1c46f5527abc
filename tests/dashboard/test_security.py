"""The dashboard's session against the real API over HTTP: signed-out refusals, the cookie's flags, CSRF, a
stolen cookie after sign-out, the Content-Security-Policy, rate-limited sign-in, no secret in any page.
The browser-call signalling (`/api/webrtc/...`) is refused like every other API route: a real aiortc offer
gets no SDP answer and makes no call without a live session or key."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from parley.api.routers.ui import ASSETS
from parley.api.session import COOKIE_NAME, SessionStore, SignInLimiter
from tests.dashboard.conftest import API_KEY, TOOL_SECRET, LiveServer, start_server, stop_server

PAGES = ["/ui/", "/ui/calls/0000-none", "/ui/agents", "/ui/agents/receptionist", "/ui/talk/receptionist",
         "/ui/queue", "/ui/campaigns", "/ui/campaigns/0000-none"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("dash-sec"))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def offer_sdp() -> str:
    """A real WebRTC offer (aiortc, Opus, ICE credentials and DTLS fingerprint), as a browser would send."""
    from tests.webrtc.peer import BrowserPeer

    async def make() -> str:
        peer = BrowserPeer()
        try:
            return await peer.offer_sdp()
        finally:
            await peer.close()

    return asyncio.run(make())


def assert_no_browser_call(live: LiveServer, client: httpx.Client, sdp: str, headers: dict[str, str]) -> None:
    """The signalling routes refuse `client` (401, no SDP answer) and no browser call exists afterwards."""
    offer = client.post("/api/webrtc/offer", json={"agent": "receptionist", "sdp": sdp, "type": "offer"},
                        headers=headers)
    assert offer.status_code == 401 and offer.json()["error"] == "unauthorized", offer.text
    assert "sdp" not in offer.json() and "call_id" not in offer.json()
    end = client.delete("/api/webrtc/calls/anything", headers=headers)
    assert end.status_code == 401 and end.json()["error"] == "unauthorized", end.text
    assert not live.state.webrtc.browser_calls
    calls, _ = live.run(live.state.calls.list_calls(channel="webrtc"))
    assert calls == []


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, follow_redirects=False, timeout=10) as c:
        yield c


def sign_in(client: httpx.Client, key: str = API_KEY) -> httpx.Response:
    return client.post("/ui/sign-in", data={"api_key": key, "next": "/ui/queue"})


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/ui/")
    assert page.status_code == 200
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def test_signed_out_every_page_goes_to_sign_in_and_no_data_is_served(live: LiveServer, client: httpx.Client,
                                                                     offer_sdp: str) -> None:
    ui_routes = {r.path for r in iter_route_contexts(live.app.routes) if (r.path or "").startswith("/ui/")
                 and "GET" in (getattr(r, "methods", None) or set()) and r.path != "/ui/sign-in"}
    assert len(ui_routes) == len(PAGES), f"a page this test does not know: {sorted(ui_routes)}"
    for cookie in (None, "forged-or-expired-token"):
        client.cookies.clear()
        if cookie:
            client.cookies.set(COOKIE_NAME, cookie)
        for path in PAGES:
            r = client.get(path)
            assert r.status_code == 303, f"{path} with cookie {cookie!r}: {r.status_code}"
            assert r.headers["location"].startswith("/ui/sign-in?next=/ui/"), r.headers["location"]
            assert r.content == b""
        for api in ("/api/calls", "/api/live-calls", "/api/agents", "/api/agents/receptionist/config",
                    "/api/campaigns"):
            r = client.get(api)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", api
        assert_no_browser_call(live, client, offer_sdp, {})
    assert client.get("/").headers["location"] == "/ui/"
    form = client.get("/ui/sign-in")
    assert form.status_code == 200 and 'name="api_key"' in form.text and ">Sign in</button>" in form.text
    assert '<label for="api_key">API key</label>' in form.text


def test_sign_in_gives_an_httponly_samesite_cookie_and_no_secret(live: LiveServer, client: httpx.Client) -> None:
    wrong = sign_in(client, "not-the-key")
    assert wrong.status_code == 401 and "not valid" in wrong.text and COOKIE_NAME not in wrong.headers.get(
        "set-cookie", "")
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/ui/queue"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    token = client.cookies[COOKIE_NAME]
    assert API_KEY not in cookie and API_KEY not in r.headers["location"]
    # no page and no asset holds the API key, the cookie's token or an agent's secret
    bodies = [client.get(p).text for p in PAGES]
    bodies += [p.read_text() for p in ASSETS.rglob("*") if p.is_file()]
    bodies.append(client.get("/api/agents/receptionist/config").text)
    for body in bodies:
        assert API_KEY not in body and token not in body and "tool-secret" not in body
    config = client.get("/api/agents/receptionist/config").json()
    assert "Authorization: (hidden)" in config["yaml"] and TOOL_SECRET not in config["yaml"]
    # the sign-in page does not bounce a browser to another site
    away = client.post("/ui/sign-in", data={"api_key": API_KEY, "next": "https://evil.example/ui/"})
    assert away.headers["location"] == "/ui/"
    assert client.get("/ui/sign-in", params={"next": "//evil.example/x"}).headers["location"] == "/ui/"


def test_cookie_reads_the_api_but_changes_need_the_csrf_token(client: httpx.Client) -> None:
    sign_in(client)
    assert client.get("/api/calls").status_code == 200  # the cookie alone reads
    body = {"to_number": "+14155550123", "schedule_at": "2099-01-01T00:00:00Z"}
    missing = client.post("/api/outbound-call", json=body)
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["message"]
    wrong = client.post("/api/outbound-call", json=body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    token = csrf_of(client)
    foreign = client.post("/api/outbound-call", json=body,
                          headers={"X-CSRF-Token": token, "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "cross-site" in foreign.json()["message"]
    placed = client.post("/api/outbound-call", json=body, headers={"X-CSRF-Token": token})
    assert placed.status_code == 200, placed.text
    call_id = placed.json()["call_id"]
    assert client.post(f"/api/calls/{call_id}/cancel").status_code == 403
    # an API client with X-API-Key needs no CSRF token (and no cookie)
    with httpx.Client(base_url=str(client.base_url)) as api_client:
        r = api_client.post(f"/api/calls/{call_id}/cancel", headers={"X-API-Key": API_KEY})
        assert r.status_code == 200 and r.json()["status"] == "canceled"


def test_a_stolen_cookie_is_useless_after_sign_out(live: LiveServer, client: httpx.Client, offer_sdp: str) -> None:
    sign_in(client)
    stolen = client.cookies[COOKIE_NAME]
    token = csrf_of(client)
    # a live-calls stream opened with the cookie ends when the session does
    events: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=live.url, cookies={COOKIE_NAME: stolen}, timeout=20) as c:
            with c.stream("GET", "/api/live-calls") as stream:
                assert stream.status_code == 200
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        events.append(line.split(":", 1)[1].strip())
                        opened.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10) and events[0] == "live"

    assert client.post("/ui/sign-out").status_code == 403  # without the CSRF token: refused, still signed in
    assert client.get("/api/calls").status_code == 200
    out = client.post("/ui/sign-out", headers={"X-CSRF-Token": token})
    assert out.status_code == 204 and f'{COOKIE_NAME}=""' in out.headers["set-cookie"]
    listener.join(10)
    assert not listener.is_alive() and events[-1] == "ended", events

    with httpx.Client(base_url=live.url, cookies={COOKIE_NAME: stolen}, follow_redirects=False) as thief:
        assert thief.get("/api/calls").status_code == 401
        assert "sign in again" in thief.get("/api/agents").json()["message"]
        assert thief.get("/api/live-calls").status_code == 401
        assert thief.post("/api/outbound-call", json={"to_number": "+14155550123"},
                          headers={"X-CSRF-Token": token}).status_code == 401
        assert_no_browser_call(live, thief, offer_sdp, {"X-CSRF-Token": token})  # no browser call either
        for path in PAGES:
            assert thief.get(path).status_code == 303


def test_csp_allows_only_own_assets(client: httpx.Client) -> None:
    sign_in(client)
    for path in ["/", "/ui/sign-in", "/ui/", "/ui/agents", "/ui/static/app.js", "/ui/static/app.css"]:
        r = client.get(path)
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe" not in csp and "http" not in csp, csp
        assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in client.get("/docs").headers  # the API docs keep their own page
    # the shipped pages load nothing from elsewhere and hold no inline script or style
    for page in [*ASSETS.glob("*.html")]:
        text = page.read_text()
        for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert ref.startswith("/ui/") or ref.startswith("#"), f"{page.name} loads {ref}"
        assert "<script>" not in text and "style=" not in text and "<style" not in text
    for script in Path(ASSETS / "static").rglob("*.js"):
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", script.read_text()), script.name


def test_sign_in_is_rate_limited(live: LiveServer, client: httpx.Client) -> None:
    limiter = live.state.sign_in_limiter
    try:
        for _ in range(limiter.max_failures):
            assert sign_in(client, "wrong-key").status_code == 401
        blocked = sign_in(client)  # even the right key waits now
        assert blocked.status_code == 429 and "Too many wrong keys" in blocked.text
        assert int(blocked.headers["retry-after"]) > 0
        assert COOKIE_NAME not in client.cookies
    finally:
        live.state.sign_in_limiter = SignInLimiter()
    assert sign_in(client).status_code == 303


def test_limiter_window_and_global_cap() -> None:
    now = [0.0]
    limiter = SignInLimiter(max_failures=3, window_s=60, global_max_failures=5, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(60)
    assert limiter.retry_after("10.0.0.2") == 0  # another address is not blocked by the first
    limiter.failed("10.0.0.2")
    limiter.failed("10.0.0.3")
    assert limiter.retry_after("10.0.0.4") == pytest.approx(60)  # all addresses together: the global cap
    now[0] = 61
    assert limiter.retry_after("10.0.0.1") == 0 and limiter.retry_after("10.0.0.4") == 0


def test_sessions_end_when_idle_too_long_or_too_old_or_closed() -> None:
    now = [0.0]
    store = SessionStore(idle_s=60, max_age_s=300, max_sessions=2, clock=lambda: now[0])
    token, session = store.open("digest-of-key")
    assert store.get(token) is session and store.alive(session)
    assert token not in session.digest and session.csrf_ok(session.csrf_token) and not session.csrf_ok("x")
    for minute in range(1, 5):  # used every 50 s: stays open until its absolute age runs out
        now[0] = minute * 50.0
        assert store.get(token) is session
    now[0] = 301
    assert store.get(token) is None and not store.alive(session)
    idle_token, _ = store.open("k")
    now[0] += 61
    assert store.get(idle_token) is None
    a, _ = store.open("k")
    b, _ = store.open("k")
    c, _ = store.open("k")  # over max_sessions: the oldest goes
    assert store.get(a) is None and store.get(b) and store.get(c)
    assert store.close(c) and store.get(c) is None and not store.close(c)
