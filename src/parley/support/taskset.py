"""Background tasks owned by one object, cancelled together when it closes.

    tasks = TaskSet("gateway")
    tasks.spawn(self._register(trunk), name=f"register-{trunk.name}")
    ...
    await tasks.cancel_all()

A `TaskSet` keeps a reference to every task it started (asyncio holds only weak ones, so an unreferenced
task may be collected mid-run), drops it when it finishes, and logs a task that failed with an exception
nobody awaited — so no background failure is silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from parley.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")


class TaskSet:
    """Tasks started on behalf of `owner` (named in the log line of a task that fails).

    `on_failure(task, exc)`, when given, reports a failed task instead of the default error log line
    (for expected failures such as a send to a peer that went away)."""

    def __init__(
        self, owner: str, on_failure: Callable[[asyncio.Task[Any], BaseException], None] | None = None
    ) -> None:
        self.owner = owner
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if self._on_failure is not None:
            self._on_failure(task, exc)
        else:
            log.error("background task failed", owner=self.owner, task=task.get_name(),
                      error=str(exc) or type(exc).__name__, exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def cancel(self) -> None:
        """Ask every running task to stop (without waiting)."""
        for task in list(self._tasks):
            task.cancel()

    async def cancel_all(self, timeout_s: float | None = None) -> None:
        """Cancel every running task and wait (at most `timeout_s`) until they have stopped."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
