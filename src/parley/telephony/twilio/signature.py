"""`X-Twilio-Signature` checks (the SDK's `RequestValidator`) with the URL Twilio actually requested.

Parley usually sits behind a proxy or tunnel, so the URL the app sees (`http://127.0.0.1:8000/twilio/voice`)
is not the one Twilio signed (`https://parley.example.com/twilio/voice`). The signed URL is, in order:
the configured public base URL + the request's path and query; else the `Forwarded` / `X-Forwarded-Proto` /
`X-Forwarded-Host` headers; else the request URL itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def _forwarded(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(proto, host) from RFC 7239 `Forwarded` or the X-Forwarded-* headers (first hop)."""
    fwd = headers.get("forwarded")
    if fwd:
        first = fwd.split(",")[0]
        pairs = dict(p.strip().split("=", 1) for p in first.split(";") if "=" in p)
        proto, host = pairs.get("proto"), pairs.get("host")
        if proto or host:
            return (proto.strip('"') if proto else None), (host.strip('"') if host else None)
    proto = headers.get("x-forwarded-proto")
    host = headers.get("x-forwarded-host")
    return (proto.split(",")[0].strip() if proto else None), (host.split(",")[0].strip() if host else None)


def signed_url(request_url: str, headers: Mapping[str, str], public_base: str = "") -> str:
    """The URL Twilio signed for a request the app saw at `request_url` (lower-case header names)."""
    seen = urlsplit(request_url)
    tail = seen.path + (f"?{seen.query}" if seen.query else "")
    if public_base:
        base = urlsplit(public_base)
        # a base with a path prefix (https://host/parley) is where the proxy mounts us
        prefix = base.path.rstrip("/")
        path = tail if not prefix or tail.startswith(prefix + "/") else prefix + tail
        return f"{base.scheme}://{base.netloc}{path}"
    proto, host = _forwarded(headers)
    if proto or host:
        return f"{proto or seen.scheme}://{host or seen.netloc}{tail}"
    return request_url


def is_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """True when `signature` is Twilio's signature of `url` + `params` with `auth_token`."""
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The signature Twilio would send (for the CLI's self-check and for tests playing Twilio)."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))
