"""Call slots: concurrency caps and calls-per-second, reserved atomically before a call starts.

A *claim* is one cap a call counts against (the whole cluster, a trunk, an agent, this worker). A call's
holder (its record id, or a provisional id before the record exists) reserves all its claims at once or
none of them; the first full claim is the refusal, with its SIP code and a reason in words.

* `LocalSlots` — in-process counters. `try_reserve` is synchronous: called between two awaits it cannot
  interleave with another INVITE's check, so a burst never overshoots a cap (issue 18, defect 3).
* `RedisSlots` — the same across every process sharing `REDIS_URL`, in one Lua script (atomic in Redis).
  Each slot is a member of a sorted set per claim, scored with its lease expiry; the holding worker renews
  its leases with every heartbeat, so the slots of a worker killed with `kill -9` free themselves when the
  lease runs out. Calls-per-second is a one-second sliding window per key, inbound and outbound together.

`CallSlots` combines them: this worker's capacity (NUM_AGENTS) is always local, the shared caps are in
Redis when there is one, else local too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from parley.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Claim:
    """One cap a call counts against: `key` (e.g. `trunk:carrier`), its `cap`, and how a full cap is
    answered (`code`, `reason` in words)."""

    key: str
    cap: int
    code: int
    reason: str


class LocalSlots:
    """Per-process counters. Every method is synchronous (no await): atomic on the event loop."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, ...]] = {}
        self._counts: Counter[str] = Counter()

    def try_reserve(self, holder: str, claims: Sequence[Claim]) -> Claim | None:
        """Reserve every claim for `holder`, or none: returns the first full claim (None = reserved).
        Reserving again for a holder that already holds slots is a no-op success."""
        if holder in self._held:
            return None
        for claim in claims:
            if self._counts[claim.key] >= claim.cap:
                return claim
        keys = tuple(c.key for c in claims)
        for key in keys:
            self._counts[key] += 1
        self._held[holder] = keys
        return None

    def release(self, holder: str) -> bool:
        """Free `holder`'s slots (idempotent); True when it held some."""
        keys = self._held.pop(holder, None)
        if keys is None:
            return False
        for key in keys:
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]
        return True

    def holds(self, holder: str) -> bool:
        return holder in self._held

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    @property
    def holders(self) -> list[str]:
        return list(self._held)


# KEYS: one sorted set per claim. ARGV: now_ms, expiry_ms, member, then the caps in KEYS order.
# Drops expired members, refuses with the 1-based index of the first full claim, else adds everywhere.
_RESERVE = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, ARGV[3]) == false and redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
end
return 0
"""

# KEYS[1]: the window. ARGV: now_ms, rate (starts per second), member, mode (take | note).
# take: a start if the window has room (returns 0), else the ms to wait; note: always counts the start.
_RATE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1000)
if ARGV[4] == 'take' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + 1000 - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], 2000)
return 0
"""


# _RESERVE, then (when reserved) _RATE's `note` in the same script: an inbound call's slots and its count in
# the calls-per-second window in one round trip. KEYS: the claims' sorted sets, then the window.
# ARGV: now_ms, expiry_ms, member, the caps in KEYS order, then the window's member.
_RESERVE_NOTE = """
local now = tonumber(ARGV[1])
local n = #KEYS - 1
for i = 1, n do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, ARGV[3]) == false and redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
end
local window = KEYS[n + 1]
redis.call('ZREMRANGEBYSCORE', window, '-inf', now - 1000)
redis.call('ZADD', window, now, ARGV[4 + n])
redis.call('PEXPIRE', window, 2000)
return 0
"""


class RedisSlots:
    """Cluster-wide slots in Redis, leased for `lease_s` and renewed by `renew()` (the worker heartbeat)."""

    def __init__(self, redis: aioredis.Redis, *, worker: str, prefix: str = "parley:", lease_s: float = 15.0) -> None:
        self.redis = redis
        self.worker = worker
        self.prefix = prefix
        self.lease_s = lease_s
        self._reserve: AsyncScript = redis.register_script(_RESERVE)
        self._rate: AsyncScript = redis.register_script(_RATE)
        self._reserve_note: AsyncScript = redis.register_script(_RESERVE_NOTE)
        self._held: dict[str, tuple[str, ...]] = {}

    def _key(self, claim_key: str) -> str:
        return f"{self.prefix}slots:{claim_key}"

    def _member(self, holder: str) -> str:
        return f"{self.worker}|{holder}"

    async def reserve(self, holder: str, claims: Sequence[Claim]) -> Claim | None:
        """All of `claims` across the cluster, atomically, or the first full one."""
        if not claims or holder in self._held:
            return None
        now = int(time.time() * 1000)
        keys = [self._key(c.key) for c in claims]
        index = int(await self._reserve(keys=keys, args=[now, now + int(self.lease_s * 1000),
                                                          self._member(holder), *[c.cap for c in claims]]))
        if index:
            return claims[index - 1]
        self._held[holder] = tuple(keys)
        return None

    async def reserve_and_note(self, holder: str, claims: Sequence[Claim], rate_key: str) -> Claim | None:
        """`reserve`, and when reserved count the start in `rate_key`'s calls-per-second window (as
        `note_rate`): both in one script, one round trip for an inbound call instead of two."""
        if not claims or holder in self._held:
            refused = await self.reserve(holder, claims)
            if refused is None:
                await self.note_rate(rate_key)
            return refused
        now = int(time.time() * 1000)
        keys = [self._key(c.key) for c in claims]
        index = int(await self._reserve_note(
            keys=[*keys, self._key("cps:" + rate_key)],
            args=[now, now + int(self.lease_s * 1000), self._member(holder), *[c.cap for c in claims],
                  uuid.uuid4().hex]))
        if index:
            return claims[index - 1]
        self._held[holder] = tuple(keys)
        return None

    async def release(self, holder: str) -> None:
        keys = self._held.pop(holder, None)
        if not keys:
            return
        async with self.redis.pipeline(transaction=True) as p:
            for key in keys:
                p.zrem(key, self._member(holder))
            await p.execute()

    async def renew(self) -> None:
        """Push the lease of every slot this worker holds forward (called by the heartbeat)."""
        if not self._held:
            return
        expiry = int((time.time() + self.lease_s) * 1000)
        async with self.redis.pipeline(transaction=False) as p:
            for holder, keys in self._held.items():
                member = self._member(holder)
                for key in keys:
                    p.zadd(key, {member: expiry}, xx=True)
            await p.execute()

    async def count(self, key: str) -> int:
        """Live slots of a claim key across the cluster (expired leases not counted)."""
        now = int(time.time() * 1000)
        return int(await self.redis.zcount(self._key(key), now, "+inf"))

    async def take_rate(self, key: str, rate: float) -> float:
        """One start within `rate` per second across the cluster: 0 when taken, else seconds to wait."""
        now = int(time.time() * 1000)
        wait_ms = int(await self._rate(keys=[self._key("cps:" + key)],
                                       args=[now, max(1, int(rate)), uuid.uuid4().hex, "take"]))
        return wait_ms / 1000.0

    async def note_rate(self, key: str) -> None:
        """Count a start that is not paced (an inbound call) in the window."""
        now = int(time.time() * 1000)
        await self._rate(keys=[self._key("cps:" + key)], args=[now, 1, uuid.uuid4().hex, "note"])


class CallSlots:
    """This worker's slots (always local, synchronous) plus the shared caps (Redis when given, else local).

    `try_local` is the atomic first step of an INVITE or a dial; `reserve_shared` the second (atomic in
    Redis); `release` frees both. Every holder passes through `try_local` first."""

    def __init__(self, worker_capacity: int, *, shared: RedisSlots | None = None) -> None:
        self.worker_capacity = worker_capacity
        self.local = LocalSlots()
        self.shared = shared
        self.unacked = 0  #: answered calls whose ACK never came (slot released at the ACK timeout)

    def worker_claim(self) -> Claim:
        return Claim("worker", self.worker_capacity, 503,
                     f"all {self.worker_capacity} conversation slots of this worker are busy (NUM_AGENTS)")

    def is_this_workers(self, claim: Claim) -> bool:
        """True for this worker's own capacity: another worker may have room where this one has none."""
        return claim.key == self.worker_claim().key

    def try_local(self, holder: str, shared_claims: Sequence[Claim]) -> Claim | None:
        """Step 1, synchronous: this worker's capacity, plus the shared claims when there is no Redis."""
        claims = [self.worker_claim()]
        if self.shared is None:
            claims.extend(shared_claims)
        return self.local.try_reserve(holder, claims)

    async def reserve_shared(self, holder: str, shared_claims: Sequence[Claim], *,
                             note_start: str | None = None) -> Claim | None:
        """Step 2: the cluster-wide claims in Redis (nothing to do without Redis). Frees step 1 on refusal.
        `note_start`: also count the start in that key's calls-per-second window once reserved (what
        `CallSlots.note_start` does), in the same round trip."""
        if self.shared is None:
            return None
        try:
            if note_start is None:
                refused = await self.shared.reserve(holder, shared_claims)
            else:
                refused = await self.shared.reserve_and_note(holder, shared_claims, note_start)
        except BaseException:
            self.local.release(holder)
            raise
        if refused is not None:
            self.local.release(holder)
        return refused

    async def reserve(self, holder: str, shared_claims: Sequence[Claim]) -> Claim | None:
        """Both steps (step 1 runs before the first await)."""
        refused = self.try_local(holder, shared_claims)
        if refused is not None:
            return refused
        return await self.reserve_shared(holder, shared_claims)

    def holds(self, holder: str) -> bool:
        return self.local.holds(holder)

    async def release(self, holder: str) -> None:
        """Free the holder's slots everywhere (idempotent; a Redis error is logged, the lease expires)."""
        self.local.release(holder)
        if self.shared is not None:
            try:
                await self.shared.release(holder)
            except Exception as exc:  # noqa: BLE001 - the lease runs out on its own
                log.warning("could not release a cluster slot; its lease will expire", holder=holder,
                            error=str(exc) or type(exc).__name__)

    @property
    def live(self) -> int:
        return self.local.count("worker")

    async def wait_rate(self, key: str, rate: float) -> None:
        """Wait for a cluster-wide start within `rate` per second (no-op without Redis)."""
        if self.shared is None:
            return
        while (delay := await self.shared.take_rate(key, rate)) > 0:
            await asyncio.sleep(delay)

    async def note_start(self, key: str) -> None:
        """Count an unpaced start (inbound) in the cluster-wide window; errors are logged only."""
        if self.shared is None:
            return
        try:
            await self.shared.note_rate(key)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not count an inbound start in the cluster rate window", error=str(exc))


__all__ = ["CallSlots", "Claim", "LocalSlots", "RedisSlots"]

