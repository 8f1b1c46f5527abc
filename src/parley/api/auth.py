"""`X-API-Key` authentication. Keys are kept only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from fastapi.security import APIKeyHeader

from parley.api.errors import ApiError

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="One of the keys in API_KEYS.")


def digest(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    """A fresh random API key."""
    return "pk_" + secrets.token_urlsafe(24)


class KeyRing:
    """The accepted API keys, as digests only."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [digest(k) for k in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, key: str | None) -> bool:
        """True when `key` is one of the configured keys."""
        if not key:
            return False
        candidate = digest(key)
        ok = False
        for d in self._digests:  # no early exit: constant time over the ring
            ok |= hmac.compare_digest(candidate, d)
        return ok


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries a valid `X-API-Key`."""
    key = await _header(request)
    ring: KeyRing = request.app.state.keyring
    if not key:
        raise ApiError(401, "unauthorized", f"missing {API_KEY_HEADER} header")
    if not ring.accepts(key):
        raise ApiError(401, "unauthorized", f"invalid {API_KEY_HEADER}")
