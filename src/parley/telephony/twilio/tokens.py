"""Single-use Media Streams tokens: a random secret handed to Twilio in TwiML, only its digest stored.

The digest and expiry go into the call record's metadata; the stream's `start` must present the secret,
before the expiry, while the call is still `ringing`. Moving the record to `in_progress` (a locked,
checked transition) is what uses the token up, so a replay finds the call already answered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamToken:
    """A fresh token: `secret` for the TwiML, `digest` and `expires_at` (epoch seconds) for the record."""

    secret: str
    digest: str
    expires_at: float

    def stored(self) -> dict[str, object]:
        return {"token_sha256": self.digest, "token_expires_at": self.expires_at}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(ttl_s: float, now: float | None = None) -> StreamToken:
    secret = secrets.token_urlsafe(32)
    return StreamToken(secret, digest(secret), (now or time.time()) + ttl_s)


def check(secret: str | None, stored: dict[str, object], now: float | None = None) -> str | None:
    """None when `secret` matches the stored digest and has not expired, else the reason in words."""
    if not secret:
        return "the stream's start carries no token"
    want = stored.get("token_sha256")
    if not isinstance(want, str) or not want:
        return "the call has no stream token (it was not answered with our TwiML)"
    if not hmac.compare_digest(digest(secret), want):
        return "the stream token does not match the call's"
    expires = stored.get("token_expires_at")
    if isinstance(expires, (int, float)) and (now or time.time()) > expires:
        return "the stream token has expired"
    return None
