"""The shared drift-free send clock of RTP sessions: one ticker per (event loop, ptime, clock).

    pacer = Pacer.join(member, ptime_ms=20, clock=MONOTONIC)   # starts the ticker if none runs
    pacer.n                      # ticks so far, skipped ones included
    await pacer.next_tick()      # done right after the next tick's packets are out (readers pace on it)
    pacer.leave(member)          # the ticker stops once it has no members

Tick n is due at t0 + n * ptime (t0: when the ticker started), so lateness never accumulates: a late
wake-up is followed by a shorter sleep, and ticks that fell behind are run back to back — with one
yield to the loop each, so an overloaded pacer does not starve receivers. If the loop stalls for more
than `MAX_STALL` s, the missed ticks are skipped instead (each member is told how many, once), since
a burst of stale packets is worse than a gap. A member's `tick` that raises is logged and the others
still tick.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import ClassVar, Protocol

from parley.logging import get_logger
from parley.sip.clock import Clock

__all__ = ["MAX_STALL", "Pacer", "PacerMember"]

log = get_logger(__name__)

MAX_STALL = 0.2  # seconds behind schedule after which missed ticks are skipped


class PacerMember(Protocol):
    """What the pacer drives: one call per tick (or one per run of skipped ticks)."""

    def tick(self, deadline: float) -> None: ...

    def skip_ticks(self, n: int) -> None: ...


class Pacer:
    """One drift-free ticker; get it with `join`, never construct it directly."""

    _instances: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, Clock], Pacer]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, ptime_ms: int, clock: Clock) -> None:
        self._key = (ptime_ms, clock)
        self._registry = Pacer._instances.setdefault(loop, {})
        self._registry[self._key] = self
        self.ptime_ms = ptime_ms
        self.period = ptime_ms / 1000.0
        self.clock = clock
        self.members: dict[int, PacerMember] = {}
        self.task: asyncio.Task[None] | None = None
        self.n = 0  # ticks so far (including skipped ones)
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def join(cls, member: PacerMember, ptime_ms: int, clock: Clock) -> Pacer:
        """The running pacer of this loop for `ptime_ms` on `clock` (started if needed), with `member` in."""
        loop = asyncio.get_running_loop()
        pacer = cls._instances.get(loop, {}).get((ptime_ms, clock))
        if pacer is None or not pacer.running:
            pacer = cls(loop, ptime_ms, clock)
            pacer.members[id(member)] = member
            pacer.task = loop.create_task(pacer._run(), name=f"rtp-pacer-{ptime_ms}ms")
        else:
            pacer.members[id(member)] = member
        return pacer

    def leave(self, member: PacerMember) -> None:
        """Take `member` out; the last one out stops the ticker (the next `join` starts a new one)."""
        self.members.pop(id(member), None)
        if not self.members and self.task is not None:
            self._unregister()
            self.task.cancel()

    def _unregister(self) -> None:
        if self._registry.get(self._key) is self:
            del self._registry[self._key]

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def next_tick(self) -> asyncio.Future[None]:
        """A future done after the next tick (one per waiter, so cancelling one waiter hurts no other)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _run(self) -> None:
        clock, period = self.clock, self.period
        t0 = clock.now()
        n = 0
        try:
            while True:
                n += 1
                deadline = t0 + n * period
                # always yield, even when behind: an overloaded pacer must not starve receivers
                await clock.sleep(deadline - clock.now())
                behind = clock.now() - deadline
                if behind > MAX_STALL:
                    skipped = int(behind / period)
                    n += skipped
                    deadline += skipped * period
                    for m in list(self.members.values()):
                        m.skip_ticks(skipped)
                for m in list(self.members.values()):
                    try:
                        m.tick(deadline)
                    except Exception:  # one broken session must not stop the others' media
                        log.exception("rtp.tick_failed", member=repr(m))
                self.n = n
                self._wake()  # readers (read_frame) run after this tick's packets are out
        finally:
            self._unregister()
            self._wake()
