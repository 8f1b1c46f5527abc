"""The typed FastAPI dependencies routes use: one alias per part of the running API.

Declare a parameter as `calls: CallsDep` (or `AgentsDep`, `SettingsDep`, …) instead of reading
`request.app.state`. `CallsDep` answers 503 while the calls service is not running; the gateway is optional
(only `parley up` runs one), so routes that use it take `StateDep` and look at `state.gateway`.
`require_api_key` guards every router but health, the docs and the dashboard's sign-in page and assets: it
takes an `X-API-Key` or a dashboard session cookie (`api/session.py`), the latter with a CSRF token header
on every state-changing request.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from parley.agents import AgentRegistry
from parley.api.auth import API_KEY_HEADER, api_key_header
from parley.api.errors import ApiError
from parley.api.health import HealthRegistry
from parley.api.session import COOKIE_NAME, CSRF_HEADER, SAFE_METHODS, Session
from parley.api.state import ApiState
from parley.api.voice_engines import VoiceEngines
from parley.calls import CallsService
from parley.settings import Settings
from parley.telephony.store import TelephonyStore


def get_state(request: Request) -> ApiState:
    """The running API's state."""
    return ApiState.of(request.app)


StateDep = Annotated[ApiState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_agents(state: StateDep) -> AgentRegistry:
    return state.agents


def get_health(state: StateDep) -> HealthRegistry:
    return state.health


def get_voice_engines(state: StateDep) -> VoiceEngines:
    return state.voice_engines


def get_calls(state: StateDep) -> CallsService:
    """The running calls service, or 503."""
    if state.calls is None:
        raise ApiError(503, "unavailable", "the calls service is not running (the app's startup did not run)")
    return state.calls


SettingsDep = Annotated[Settings, Depends(get_settings)]
AgentsDep = Annotated[AgentRegistry, Depends(get_agents)]
HealthDep = Annotated[HealthRegistry, Depends(get_health)]
VoiceEnginesDep = Annotated[VoiceEngines, Depends(get_voice_engines)]
CallsDep = Annotated[CallsService, Depends(get_calls)]


def get_telephony_store(calls: CallsDep) -> TelephonyStore:
    """Trunks and dispatch rules, in the calls database."""
    return TelephonyStore(calls.store)


TelephonyStoreDep = Annotated[TelephonyStore, Depends(get_telephony_store)]


async def require_api_key(request: Request, state: StateDep) -> None:
    """401 unless the request carries a valid `X-API-Key` or a live dashboard session cookie; a cookie-authenticated
    request that may change something (POST, DELETE …) also needs the session's `X-CSRF-Token` header (403)."""
    key = await api_key_header(request)
    if key:
        if not state.keyring.accepts(key):
            raise ApiError(401, "unauthorized", f"invalid {API_KEY_HEADER}")
        return
    session = session_of(request, state)
    if session is None:
        cookie = " (the dashboard session has ended; sign in again)" if request.cookies.get(COOKIE_NAME) else ""
        raise ApiError(401, "unauthorized", f"missing {API_KEY_HEADER} header{cookie}")
    if request.method not in SAFE_METHODS:
        check_csrf(request, session)


def session_of(request: Request, state: ApiState) -> Session | None:
    """The live dashboard session of the request's cookie (kept on `request.state.session`), or None."""
    session = state.sessions.get(request.cookies.get(COOKIE_NAME))
    request.state.session = session
    return session


def check_csrf(request: Request, session: Session) -> None:
    """403 unless a cookie-authenticated change comes from this site with the session's CSRF token."""
    if not same_origin(request):
        raise ApiError(403, "forbidden", f"cross-site request refused (Origin {request.headers.get('origin')})")
    if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "forbidden", f"missing or wrong {CSRF_HEADER} header: a signed-in page sends the "
                       "token it was given; other clients send X-API-Key")


def same_origin(request: Request) -> bool:
    """False when the request names an `Origin` whose host differs from the one it was sent to (the scheme
    is not compared: behind a TLS proxy the app may see http while the browser says https)."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == (request.headers.get("host") or request.url.netloc).lower()
