"""Dashboard sessions: an API key signs in once and becomes a server-side session behind an HttpOnly cookie.

The cookie holds only a random token; the server keeps its SHA-256 digest, the session's CSRF token and its
times. Signing out deletes the session, so a copied cookie is useless afterwards. Sessions live in this
process's memory: a restart (or another worker behind a load balancer) asks the browser to sign in again.

`SignInLimiter` slows key guessing: after `max_failures` wrong keys from one address within `window_s`,
further attempts from it are refused until the window has passed; `global_max_failures` caps the failures
of all addresses together (many addresses guessing at once).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE_NAME = "parley_session"
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing; every other method needs the CSRF header when authenticated by cookie.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Clock = Callable[[], float]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    """One signed-in browser. `key_digest` ties it to the API key that opened it."""

    digest: str
    csrf_token: str
    key_digest: str
    created_at: float
    last_seen: float

    def csrf_ok(self, token: str | None) -> bool:
        """True when `token` is this session's CSRF token (constant-time)."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token)


@dataclass
class SessionStore:
    """The open sessions, by token digest. A session ends after `idle_s` without a request, after
    `max_age_s` in all, or at sign-out; at most `max_sessions` are kept (the oldest goes first)."""

    idle_s: float = 8 * 3600
    max_age_s: float = 24 * 3600
    max_sessions: int = 10_000
    clock: Clock = time.monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)

    def open(self, key_digest: str) -> tuple[str, Session]:
        """A new session for the key with digest `key_digest`: (cookie token, session)."""
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions.values(), key=lambda s: s.created_at)
            del self._sessions[oldest.digest]
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(_digest(token), secrets.token_urlsafe(32), key_digest, now, now)
        self._sessions[session.digest] = session
        return token, session

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of a cookie token, or None (unknown, signed out or expired)."""
        if not token or len(token) > 128:
            return None
        session = self.get_by_digest(_digest(token))
        if session is not None and touch:
            session.last_seen = self.clock()
        return session

    def alive(self, session: Session) -> bool:
        """True while `session` has not been closed or expired (long-lived streams check this)."""
        return self.get_by_digest(session.digest) is session

    def get_by_digest(self, digest: str) -> Session | None:
        """The live session with this token digest (an expired one is dropped), or None."""
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_s or now - session.created_at > self.max_age_s:
            del self._sessions[digest]
            return None
        return session

    def close(self, token: str | None) -> bool:
        """End the session of a cookie token; True when there was one."""
        if not token:
            return False
        return self._sessions.pop(_digest(token), None) is not None

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def _expire(self) -> None:
        for digest in list(self._sessions):
            self.get_by_digest(digest)


@dataclass
class SignInLimiter:
    """Failed sign-ins per client address in a sliding window (see the module docstring)."""

    max_failures: int = 5
    window_s: float = 300.0
    global_max_failures: int = 100
    clock: Clock = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may try now."""
        now = self.clock()
        self._prune(now)
        waits = [0.0]
        mine = self._failures.get(client)
        if mine is not None and len(mine) >= self.max_failures:
            waits.append(mine[0] + self.window_s - now)
        if len(self._all) >= self.global_max_failures:
            waits.append(self._all[0] + self.window_s - now)
        return max(waits)

    def failed(self, client: str) -> None:
        """Count one wrong key from `client`."""
        now = self.clock()
        self._failures.setdefault(client, deque()).append(now)
        self._all.append(now)

    def succeeded(self, client: str) -> None:
        """A right key: forget the address's earlier failures."""
        self._failures.pop(client, None)

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        for client in list(self._failures):
            q = self._failures[client]
            while q and q[0] <= horizon:
                q.popleft()
            if not q:
                del self._failures[client]
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
