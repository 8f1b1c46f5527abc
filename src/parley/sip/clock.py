"""The time source of RTP media: read it, or sleep on it.

    clock.now()                 # seconds, monotonic (only differences mean anything)
    await clock.sleep(0.02)     # returns once now() has advanced by at least that much; <= 0 yields once

`MONOTONIC` (the default everywhere) is the asyncio event loop's own clock, `time.monotonic()`. Tests pass
a clock whose time moves only when told to, so pacing, latching and RTCP timing are checked without
waiting on the wall clock. Parts that share a clock share a schedule: the pacer is one per clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["MONOTONIC", "Clock", "MonotonicClock"]


class Clock(Protocol):
    """Monotonic seconds and a sleep on the same time line."""

    def now(self) -> float: ...

    async def sleep(self, delay: float) -> None: ...


class MonotonicClock:
    """The event loop's clock (`time.monotonic`, what `loop.time()` reads) and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))

    def __repr__(self) -> str:
        return "MONOTONIC"


MONOTONIC: Clock = MonotonicClock()
