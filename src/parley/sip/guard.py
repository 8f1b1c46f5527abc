"""Flood and abuse limits of the SIP endpoint: pure bookkeeping, no I/O, no clock of its own.

`SipLimits` holds the settings (docs/sip.md "Hardening"). `RateLimiter` is a token bucket per key
(source IP), `LogLimiter` lets a few log lines per key through and counts the rest, and
`FailureThrottle` turns repeated digest failures into a progressive delay and then a temporary
block. Every table is bounded (`max_keys`), the oldest key is forgotten first, so an attacker
who rotates source addresses costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar


@dataclass(frozen=True)
class SipLimits:
    """The endpoint's limits; 0 switches a rate or cap off. Sources in `trusted_sources` (IP strings,
    e.g. the proxy in front) are not rate-limited and their Via `received` is honoured."""

    requests_per_second: float = 200.0  # per source IP, every datagram / TCP frame
    request_burst: int = 400
    invites_per_source: int = 50  # INVITEs per source IP not yet answered (no final response)
    invites_total: int = 2000  # live INVITE server transactions, all sources and states (bounds memory)
    tcp_max_connections: int = 1024  # accepted connections, all peers
    tcp_max_per_source: int = 32
    tcp_idle_timeout: float = 120.0  # no complete message yet and no byte for this long: close
    tcp_session_idle_timeout: float = 3600.0  # a connection that carried messages (a call's flow): close after this
    tcp_message_timeout: float = 10.0  # a started message must be complete within this
    auth_free_failures: int = 3  # digest failures per source / username before any delay
    auth_block_after: int = 10  # failures before a temporary block
    auth_block_seconds: float = 60.0
    auth_max_delay: float = 2.0
    log_burst: int = 5  # parse-error log lines per source per `log_window`
    log_window: float = 10.0
    dns_timeout: float = 2.0
    dns_cache_seconds: float = 60.0
    trusted_sources: frozenset[str] = field(default_factory=frozenset)


K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(Generic[K, V]):
    """An insertion-ordered dict that forgets its oldest key beyond `max_keys`."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self.items.get(key)

    def put(self, key: K, value: V) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.max_keys:
            self.items.popitem(last=False)

    def pop(self, key: K) -> None:
        self.items.pop(key, None)

    def __len__(self) -> int:
        return len(self.items)


class RateLimiter:
    """Token bucket per key: `rate` tokens a second, at most `burst` saved. `rate` 0 = unlimited."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: BoundedDict[str, tuple[float, float]] = BoundedDict(max_keys)  # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        """Take one token for `key`; False when its bucket is empty."""
        if self.rate <= 0:
            return True
        tokens, at = self._buckets.get(key) or (float(self.burst), now)
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets.put(key, (tokens, now))
            return False
        self._buckets.put(key, (tokens - 1.0, now))
        return True


class LogLimiter:
    """At most `burst` lines per key per `window` seconds; the rest are counted, and the first line
    of the next window says how many were left out."""

    def __init__(self, burst: int, window: float, max_keys: int = 10000) -> None:
        self.burst = burst
        self.window = window
        self._state: BoundedDict[str, list[float]] = BoundedDict(max_keys)  # key -> [window start, logged, dropped]

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(log this one?, lines suppressed in the window that just ended)."""
        st = self._state.get(key)
        suppressed = 0
        if st is None or now - st[0] >= self.window:
            suppressed = int(st[2]) if st is not None else 0
            st = [now, 0.0, 0.0]
        if st[1] < self.burst:
            st[1] += 1
            self._state.put(key, st)
            return True, suppressed
        st[2] += 1
        self._state.put(key, st)
        return False, 0


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0
    announced: bool = False


@dataclass(frozen=True)
class ThrottleVerdict:
    """What to do with the next digest attempt of a key: wait `delay` s first, or refuse at once."""

    delay: float = 0.0
    blocked: bool = False
    announce: bool = False  # first refusal of this episode: log it (once)


class FailureThrottle:
    """Repeated authentication failures per key (source IP, username): no delay for the first
    `free` failures, then a doubling delay (capped at `max_delay`), then after `block_after`
    failures a block for `block_seconds`. A success or `block_seconds` of quiet ends the episode."""

    def __init__(self, free: int, block_after: int, block_seconds: float, max_delay: float,
                 max_keys: int = 10000) -> None:
        self.free = free
        self.block_after = block_after
        self.block_seconds = block_seconds
        self.max_delay = max_delay
        self._table: BoundedDict[str, _Failures] = BoundedDict(max_keys)

    def verdict(self, key: str, now: float) -> ThrottleVerdict:
        f = self._table.get(key)
        if f is None:
            return ThrottleVerdict()
        if f.blocked_until > now:
            announce = not f.announced
            f.announced = True
            return ThrottleVerdict(blocked=True, announce=announce)
        if f.blocked_until or now - f.last > self.block_seconds:
            self._table.pop(key)  # the block ran out, or quiet for long enough: a new episode
            return ThrottleVerdict()
        extra = f.count - self.free
        if extra < 0:
            return ThrottleVerdict()
        return ThrottleVerdict(delay=min(self.max_delay, 0.1 * 2 ** min(extra, 10)))

    def failed(self, key: str, now: float) -> None:
        f = self._table.get(key) or _Failures()
        f.count += 1
        f.last = now
        if self.block_after and f.count >= self.block_after and not f.blocked_until:
            f.blocked_until = now + self.block_seconds
        self._table.put(key, f)

    def succeeded(self, key: str) -> None:
        self._table.pop(key)
