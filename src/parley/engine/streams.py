"""Async streams the engine hands around: closing a provider's stream at once (barge-in), and `KeptStream`,
a stream read ahead in the background whose items are kept for whoever takes it later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


async def close_stream(stream: AsyncIterator[Any]) -> None:
    """Close `stream` now if it can be closed (an async generator); a plain iterator holds nothing."""
    if isinstance(stream, AsyncGenerator):
        try:
            await stream.aclose()
        except RuntimeError:  # a generator still running in a task being cancelled right now
            pass


class KeptStream(Generic[T]):
    """`source` read by a task (made with `spawn`) from the moment this is made; its items are kept.

    `stream()` hands out the items kept so far at once, then the rest as they come, and raises the source's
    error where it happened; closing it before the end cancels the reading. `cancel()` stops reading."""

    def __init__(self, source: AsyncIterator[T], spawn: Spawn, name: str) -> None:
        self.items: list[T] = []
        self.error: BaseException | None = None
        self.finished = False
        self._more = asyncio.Event()
        self._task = spawn(self._read(source), name)

    async def _read(self, source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                self.items.append(item)
                self._more.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the stream
            self.error = exc
        finally:
            await close_stream(source)
            self.finished = True
            self._more.set()

    def cancel(self) -> None:
        """Stop reading the source (nobody will take what it says)."""
        self._task.cancel()

    async def stream(self) -> AsyncGenerator[T, None]:
        """The kept items, then the rest as they come; the source's error is raised after its last item."""
        sent = 0
        try:
            while True:
                while sent < len(self.items):
                    sent += 1
                    yield self.items[sent - 1]
                if self.finished:
                    if self.error is not None:
                        raise self.error
                    return
                self._more.clear()
                await self._more.wait()
        finally:
            if not self.finished:
                self.cancel()
