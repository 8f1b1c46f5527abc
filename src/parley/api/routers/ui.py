"""The dashboard at `/ui/`: sign-in and sign-out, the page shells, their static assets and security headers.

Pages are plain HTML shells (`api/ui/*.html`) filled in by `ui/app.js` from the JSON API with the
browser's session cookie. Without a live session every page redirects to `/ui/sign-in` and serves no
data; the sign-in page and `/ui/static/*` (code and styles, no data) are the only public parts.
Every response under `/ui` and `/` carries a Content-Security-Policy that allows only this app's own assets.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.api.auth import digest
from parley.api.deps import StateDep, check_csrf, same_origin, session_of
from parley.api.errors import ApiError
from parley.api.session import COOKIE_NAME
from parley.logging import get_logger

log = get_logger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "ui"
SIGN_IN = "/ui/sign-in"

#: Only this app's own scripts, styles, images and media; no inline code, no frames, no plugins.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "microphone=(self), camera=(), geolocation=()",
}

#: page name -> (title, nav entry it belongs to)
PAGES = {
    "calls": ("Calls", "calls"),
    "call": ("Call", "calls"),
    "agents": ("Agents", "agents"),
    "agent": ("Agent", "agents"),
    "talk": ("Talk to an agent", "agents"),
    "queue": ("Queue", "queue"),
    "campaigns": ("Campaigns", "campaigns"),
    "campaign": ("Campaign", "campaigns"),
}
NAV = ("calls", "queue", "campaigns", "agents")

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the dashboard to `app`: its routes, its static assets and the security headers."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=ASSETS / "static"), name="ui-static")
    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response for `/` and `/ui…` (the API docs keep their own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path == "/ui" or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if path.startswith("/ui/") and not path.startswith("/ui/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@lru_cache(maxsize=16)
def _template(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """`name` from the assets folder with each `{{key}}` replaced by its HTML-escaped value."""
    text = _template(name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path under /ui/ of this site (no open redirect)."""
    if not target:
        return "/ui/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target \
            or parts.path.startswith(SIGN_IN):
        return "/ui/"
    return target


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- public: the redirect, sign-in -----------------------------------------------------------------

@router.get("/")
async def root() -> RedirectResponse:
    """The dashboard lives at /ui/."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def _sign_in_page(message: str = "", next_url: str = "/ui/", status: int = 200,
                  headers: dict[str, str] | None = None) -> HTMLResponse:
    body = render("sign-in.html", message=message, next=_safe_next(next_url),
                  message_class="alert" if message else "alert hidden")
    return HTMLResponse(body, status_code=status, headers=headers)


@router.get(SIGN_IN)
async def sign_in_form(request: Request, state: StateDep, next: str | None = None) -> Response:
    """The sign-in form (already signed in: straight on)."""
    if session_of(request, state) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _sign_in_page(next_url=next or "/ui/")


@router.post(SIGN_IN)
async def sign_in(
    request: Request,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=512)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/ui/",
) -> Response:
    """Check the API key; on success open a session and set its HttpOnly, SameSite=Strict cookie."""
    if not same_origin(request):
        return _sign_in_page("This sign-in came from another site and was refused.", next, 403)
    client = _client(request)
    wait = state.sign_in_limiter.retry_after(client)
    if wait > 0:
        log.warning("sign-in refused: too many wrong keys", client=client, retry_after_s=round(wait))
        return _sign_in_page(f"Too many wrong keys. Try again in {int(wait) + 1} seconds.", next, 429,
                             headers={"Retry-After": str(int(wait) + 1)})
    key = api_key.strip()
    if not key:
        return _sign_in_page("Enter an API key.", next, 422)
    if not state.keyring.accepts(key):
        state.sign_in_limiter.failed(client)
        log.warning("sign-in refused: wrong key", client=client)
        return _sign_in_page("That API key is not valid.", next, 401)
    state.sign_in_limiter.succeeded(client)
    token, _ = state.sessions.open(digest(key))
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    log.info("dashboard sign-in", client=client)
    return response


@router.post("/ui/sign-out")
async def sign_out(request: Request, state: StateDep) -> Response:
    """End the session (its cookie is worthless afterwards) and clear the cookie; needs the CSRF token."""
    session = session_of(request, state)
    if session is None:
        raise ApiError(401, "unauthorized", "not signed in")
    check_csrf(request, session)
    state.sessions.close(request.cookies.get(COOKIE_NAME))
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


# --- pages: a session or the sign-in page ---------------------------------------------------------

def _page(request: Request, state: StateDep, page: str) -> Response:
    session = session_of(request, state)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{SIGN_IN}?next={quote(target, safe='/')}", status_code=303)
    title, nav = PAGES[page]
    body = render("app.html", title=title, page=page, csrf=session.csrf_token,
                  **{f"current_{n}": ("page" if n == nav else "false") for n in NAV})
    return HTMLResponse(body)


@router.get("/ui/")
async def calls_page(request: Request, state: StateDep) -> Response:
    return _page(request, state, "calls")


@router.get("/ui/calls/{call_id}")
async def call_page(call_id: str, request: Request, state: StateDep) -> Response:
    return _page(request, state, "call")


@router.get("/ui/agents")
async def agents_page(request: Request, state: StateDep) -> Response:
    return _page(request, state, "agents")


@router.get("/ui/agents/{agent}")
async def agent_page(agent: str, request: Request, state: StateDep) -> Response:
    return _page(request, state, "agent")


@router.get("/ui/talk/{agent}")
async def talk_page(agent: str, request: Request, state: StateDep) -> Response:
    return _page(request, state, "talk")


@router.get("/ui/queue")
async def queue_page(request: Request, state: StateDep) -> Response:
    return _page(request, state, "queue")


@router.get("/ui/campaigns")
async def campaigns_page(request: Request, state: StateDep) -> Response:
    return _page(request, state, "campaigns")


@router.get("/ui/campaigns/{campaign_id}")
async def campaign_page(campaign_id: str, request: Request, state: StateDep) -> Response:
    return _page(request, state, "campaign")
