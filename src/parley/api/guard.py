"""Keys before bodies: the ASGI layer in front of every route.

FastAPI reads and parses a request's body before it runs the route's dependencies, so `require_api_key`
alone would let anyone without a key make the server read (and hold) a body of any size. `RequestGuard`
runs first, on the headers only:

1. a request to a route that needs `X-API-Key` (one whose dependencies include `require_api_key`) without
   a valid key or a live dashboard session cookie is answered 401 at once — its body is never read (the
   route's dependency still checks the session's CSRF token);
2. a body declared larger than the route's cap (`Content-Length`) is answered 413 at once;
3. a body without a declared size (chunked) is counted as it is read, and 413 is answered as soon as it
   passes the cap (the rest is never read).

Caps: `DEFAULT_MAX_BODY` (1 MiB) for every route, larger ones per route template where a route takes files
(`create_app`: the voice upload, CSV recipients, the do-not-call list). Both answers have the house error shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.api.auth import API_KEY_HEADER, KeyRing
from parley.api.session import COOKIE_NAME, SessionStore
from parley.api.errors import error_body

#: Largest body any route accepts unless it has its own cap (JSON requests).
DEFAULT_MAX_BODY = 1024 * 1024

_KEY_HEADER = API_KEY_HEADER.lower().encode("latin-1")


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a chunked body passes its cap (FastAPI re-raises HTTPExceptions from
    body reading; the app's handler answers 413 in the house shape)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {_size(limit)}")


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n // 1024} KiB"


def protected_paths(app: FastAPI, marker: Callable[..., Any]) -> list[re.Pattern[str]]:
    """Path patterns of the routes whose dependencies (router-level or their own) include `marker`."""
    found: list[re.Pattern[str]] = []
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        calls: list[Any] = []
        stack = list(getattr(dependant, "dependencies", []) or [])
        while stack:
            d = stack.pop()
            calls.append(d.call)
            stack.extend(d.dependencies)
        if marker in calls:
            found.append(route.path_regex)
    return found


class RequestGuard:
    """ASGI middleware: 401 before the body for keyed routes, 413 for bodies over their cap."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        fastapi_app: FastAPI,
        keyring: KeyRing,
        marker: Callable[..., Any],
        sessions: SessionStore | None = None,
        caps: Mapping[str, int] | None = None,  # route template (e.g. /api/x/{id}/y) -> bytes
        default_cap: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.app = app
        self._fastapi = fastapi_app
        self._keyring = keyring
        self._marker = marker
        self._sessions = sessions
        self._caps = [(compile_path(template)[0], cap) for template, cap in (caps or {}).items()]
        self._default_cap = default_cap
        self._protected: list[re.Pattern[str]] | None = None

    def needs_key(self, path: str) -> bool:
        """True when `path` belongs to a route that requires `X-API-Key` (routes read on first use)."""
        if self._protected is None:
            self._protected = protected_paths(self._fastapi, self._marker)
        return any(p.match(path) for p in self._protected)

    def _signed_in(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """True when the request's cookie names a live dashboard session (without touching it)."""
        if self._sessions is None:
            return False
        for name, value in headers:
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, _, token = part.strip().partition("=")
                    if key == COOKIE_NAME and self._sessions.get(token, touch=False) is not None:
                        return True
        return False

    def cap_for(self, path: str) -> int:
        """The body cap of `path`: the first matching route template's, else the default."""
        return next((cap for regex, cap in self._caps if regex.match(path)), self._default_cap)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if self.needs_key(path):
            key = next((v for k, v in headers if k == _KEY_HEADER), None)
            if key is None and not self._signed_in(headers):
                stale = any(k == b"cookie" and COOKIE_NAME.encode() in v for k, v in headers)
                hint = " (the dashboard session has ended; sign in again)" if stale else ""
                await _answer(send, 401, "unauthorized", f"missing {API_KEY_HEADER} header{hint}")
                return
            if key is not None and not self._keyring.accepts(key.decode("latin-1")):
                await _answer(send, 401, "unauthorized", f"invalid {API_KEY_HEADER}")
                return
        cap = self.cap_for(path)
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _answer(send, 400, "bad_request", "Content-Length is not a number")
                return
            if length > cap:
                await _answer(send, 413, "body_too_large",
                              f"request body of {length} bytes is larger than {_size(cap)}")
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge(cap)
            return message

        await self.app(scope, counted, send)


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    """Send a complete JSON error response; `Connection: close` so the unread body is dropped with the
    connection instead of being read."""
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if status == 401:
        headers.append((b"www-authenticate", b"APIKey"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
