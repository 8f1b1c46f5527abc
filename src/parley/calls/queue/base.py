"""The dial queue interface. Two implementations share it and one test suite: `LocalQueue` (rows in the
calls database; one process) and `RedisQueue` (Redis Streams with a consumer group; many workers).

A job is one dial attempt of one call: `(call_id, attempt)`. `put` is idempotent per pair. Delivery is
at least once: a job taken by `get` and never `ack`ed (the consumer crashed) is handed out again. The
dialer makes that safe by moving the call `queued -> dialing` with a compare-and-set in the store before
dialing, so a job delivered twice is dialed once.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Job:
    """One delivered dial job. `token` identifies this delivery for `ack`."""

    call_id: str
    attempt: int
    due_at: datetime
    token: str


class CallQueue(abc.ABC):
    """Where queued calls wait until a dialer takes them."""

    #: `local` or `redis`.
    kind: str = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect / prepare (and hand back jobs of a crashed previous run where that applies)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Jobs not acked stay in the queue."""

    @abc.abstractmethod
    async def put(self, call_id: str, *, attempt: int = 1, due_at: datetime | None = None) -> bool:
        """Queue a dial attempt, due now or at `due_at`. False when that (call, attempt) was already queued."""

    @abc.abstractmethod
    async def get(self, timeout: float) -> Job | None:
        """The next due job (oldest due first), leased to this consumer; None after `timeout` seconds."""

    @abc.abstractmethod
    async def ack(self, job: Job) -> None:
        """The job is handled: never deliver it again."""

    @abc.abstractmethod
    async def release(self, job: Job) -> None:
        """Hand a job taken by `get` back undialed, deliverable now to any consumer (this one included).
        Nothing happens when the job was acked or canceled meanwhile."""

    @abc.abstractmethod
    async def cancel(self, call_id: str) -> bool:
        """Drop every waiting job of `call_id`; True when one was waiting."""

    @abc.abstractmethod
    async def depth(self) -> int:
        """Jobs waiting or delivered but not acked (scheduled ones included)."""

    async def release_consumer(self, consumer: str) -> int:
        """Hand the jobs `consumer` (a lost worker) took but never acked back to the queue, each once;
        returns how many. The local queue's leases expire on their own: nothing to do there."""
        return 0

    @abc.abstractmethod
    async def health(self) -> str:
        """A short status text, or raise with the reason."""
