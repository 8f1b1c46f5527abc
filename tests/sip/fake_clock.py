"""A `parley.sip.clock.Clock` whose time moves only when the test says so.

    clock = FakeClock()
    s = RtpSession("127.0.0.1", clock=clock)     # or Pacer.join(member, 20, clock), RtcpReporter(..., clock=clock)
    await clock.advance(0.1)    # a punctual loop: every sleeper wakes at its own deadline, in order
    await clock.stall(0.5)      # a blocked loop: time jumps, then whoever is due wakes (late)

Every sleep on the clock (a sleep of 0 included) waits in one queue, so after `advance` / `stall` return,
everything that was due has run up to its next sleep on the clock. Real I/O (UDP) still takes real time:
wait for it on a condition (`tests.eventually`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """Monotonic seconds that stand still between `advance`/`stall` calls."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []  # heap by deadline
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, delay), next(self._order), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each sleeper exactly at its deadline."""
        target = self._now + seconds
        await self._run_due()
        while self._sleepers and self._next_deadline() <= target:
            self._now = max(self._now, self._next_deadline())
            await self._run_due()
        self._now = target
        await self._run_due()

    async def stall(self, seconds: float) -> None:
        """Jump `seconds` ahead at once (the event loop was blocked), then run whoever is due."""
        self._now += seconds
        await self._run_due()

    def _next_deadline(self) -> float:
        while self._sleepers and self._sleepers[0][2].done():  # a cancelled sleep
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else float("inf")

    async def _run_due(self) -> None:
        """Wake the sleepers due now and let them (and what they wake) run, until none is due."""
        while True:
            await _let_the_loop_run()
            if self._next_deadline() > self._now:
                return
            while self._sleepers and self._sleepers[0][0] <= self._now:
                fut = heapq.heappop(self._sleepers)[2]
                if not fut.done():
                    fut.set_result(None)


async def _let_the_loop_run(rounds: int = 5) -> None:
    """A few passes of the event loop: enough for woken tasks to reach their next await."""
    for _ in range(rounds):
        await asyncio.sleep(0)
