"""httpx clients that obey the egress policy (`egress.py`) on every request they send.

`EgressTransport` checks each request's URL before it connects — a client following redirects sends each
hop through the transport, so every redirect target is checked too — and connects to the address it
checked (the URL is rewritten to that address; `Host` and TLS SNI/certificate checks keep the name), so a
DNS answer that changes between the check and the connection (rebinding) cannot slip through. A refused
request raises `EgressBlocked`, an `httpx.RequestError`: callers that already treat "could not connect" as
a failed delivery do the same with it.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from parley.support.egress import EgressPolicy, EgressRefused, check_url


class EgressBlocked(httpx.RequestError):
    """The egress policy refused this request's address (`reason` says why)."""

    def __init__(self, refused: EgressRefused, request: httpx.Request) -> None:
        super().__init__(f"refused by the egress policy: {refused.reason}", request=request)
        self.reason = refused.reason


class EgressTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: every request is checked against `policy` and pinned to the checked address."""

    def __init__(self, policy: EgressPolicy, inner: httpx.AsyncBaseTransport | None = None, *,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.policy = policy
        self._inner = inner or httpx.AsyncHTTPTransport(verify=verify)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            target = await check_url(str(request.url), self.policy)
        except EgressRefused as exc:
            raise EgressBlocked(exc, request) from None
        if target.addresses:
            ip = target.addresses[0]
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": request.url.host}
            if "host" not in request.headers:
                request.headers["Host"] = request.url.netloc.decode("ascii")
            request.url = request.url.copy_with(host=str(ip))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (same keyword arguments) whose every request obeys `policy`. `verify` goes
    to the inner transport."""
    verify = kwargs.pop("verify", True)
    return httpx.AsyncClient(transport=EgressTransport(policy, verify=verify), **kwargs)
