"""Dial queues: one interface (`CallQueue`), a local and a Redis implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.calls.queue.base import CallQueue, Job

if TYPE_CHECKING:
    from parley.calls.store import Store
    from parley.settings import Settings

__all__ = ["CallQueue", "Job", "make_queue"]


def make_queue(settings: Settings, store: Store, *, consumer: str | None = None) -> CallQueue:
    """`RedisQueue` when `REDIS_URL` is set, else `LocalQueue` in the calls database."""
    if settings.redis_url:
        from parley.calls.queue.redis import RedisQueue

        return RedisQueue(settings.redis_url, consumer=consumer, prefix=settings.redis_prefix)
    from parley.calls.queue.local import LocalQueue

    return LocalQueue(store, consumer=consumer)
