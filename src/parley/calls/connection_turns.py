"""Whose turn it is on a database with one connection (SQLite): a call's set-up before the queue of others.

    turns = ConnectionTurns()
    async with turns.turn(urgent=True):    # the record written before a call's 200 OK
        ...
    async with turns.turn():               # event batches, transcripts, reads, ends of calls
        ...

One holder at a time. When the holder is done the turn goes to the longest-waiting urgent holder, else to
the longest-waiting other one: a burst of calls that queues hundreds of writes cannot make the next
call's set-up wait behind them, only behind the one transaction under way. The others keep their order
and wait longer; nothing is dropped. A waiter cancelled before its turn leaves the queue; one cancelled as
its turn came passes it on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["ConnectionTurns"]


class ConnectionTurns:
    """Turns on one connection, urgent holders first (see the module docstring)."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Holders waiting for their turn."""
        return sum(not f.done() for f in (*self._urgent, *self._others))

    @asynccontextmanager
    async def turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """Hold the connection for the block, after every urgent holder waiting (and, when not `urgent`,
        after every other one waiting before this one)."""
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._pass_on()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not self.waiting:
            self._held = True
            return
        queue = self._urgent if urgent else self._others
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._pass_on()  # the turn came as this waiter was cancelled: the next one gets it
            elif fut in queue:
                queue.remove(fut)
            raise

    def _pass_on(self) -> None:
        for queue in (self._urgent, self._others):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)  # still held: handed over
                    return
        self._held = False
