"""`GroupCommit`: concurrent writes of one kind stored together, in one transaction.

    bursts = GroupCommit(write_many, name="call bursts")   # write_many(items) stores a list in one go
    await bursts.submit(item)                                # returns once `item` is stored (or raises)
    await bursts.close()                                     # waits for what was submitted

A write submitted while another is in flight joins the next one, so when many calls write at once (a
busy worker: every call's transcript entries and timeline events) they cost one transaction per round
instead of one each; when nothing else is in flight an item is written at once (no timer, no added wait).
When a joint write fails, each of its items is written alone, so a bad item (a call that does not exist)
fails only its own submitter. A submitter that stops waiting (cancelled) does not withdraw its item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from parley.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Items submitted concurrently, written together by `write` (a list of items, one transaction)."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, name: str) -> None:
        self._write = write
        self.name = name
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Store `item` with whatever else is waiting; returns when it is stored, raises what its own
        write raised."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        done.add_done_callback(_retrieved)  # a submitter that stopped waiting leaves no unread error
        self._pending.append((item, done))
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:  # none, or one of a loop gone
            self._flusher = loop.create_task(self._flush(), name=f"group-commit {self.name}")
        await asyncio.shield(done)

    async def close(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write_batch(batch)
                batch = []
        finally:
            leftovers = batch  # cancelled mid-write (the loop is closing): those items are not stored
            if self._flusher is asyncio.current_task():  # else a newer flusher owns what is pending
                self._flusher = None
                leftovers, self._pending = batch + self._pending, []
            for _, done in leftovers:
                _settle(done, RuntimeError(f"{self.name}: the writer stopped before this was stored"))

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.debug("a joint write failed; writing its items one by one", name=self.name, items=len(batch),
                      error=str(exc) or type(exc).__name__)
            for item, done in batch:
                try:
                    await self._write([item])
                except Exception as one:  # noqa: BLE001 - handed to that item's submitter
                    _settle(done, one)
                else:
                    _settle(done, None)
            return
        for _, done in batch:
            _settle(done, None)


def _retrieved(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)
