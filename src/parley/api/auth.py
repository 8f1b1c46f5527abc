"""`X-API-Key` keys: kept only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi.security import APIKeyHeader

API_KEY_HEADER = "X-API-Key"
#: Reads the key header (the check itself is `deps.require_api_key`).
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="One of the keys in API_KEYS.")


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
