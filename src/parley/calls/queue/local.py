"""The in-process queue, persisted as rows of `queue_jobs` in the calls database: survives a restart."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from parley.calls import db
from parley.calls.models import JobRow, utcnow
from parley.calls.queue.base import CallQueue, Job
from parley.calls.store import Store


def default_consumer() -> str:
    """`host:pid`, unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalQueue(CallQueue):
    """Jobs are rows; `get` leases the oldest due row for `lease_s`. A lease that runs out (the consumer
    died) makes the job deliverable again; `start()` also frees every lease of a previous run."""

    kind = "local"

    def __init__(self, store: Store, *, consumer: str | None = None, lease_s: float = 60.0,
                 poll_s: float = 0.5, reclaim_on_start: bool = True) -> None:
        self.store = store
        self.consumer = consumer or default_consumer()
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.reclaim_on_start = reclaim_on_start
        self._wake = asyncio.Event()

    async def start(self) -> None:
        """Drop finished rows (a done job means its call already left `queued`) and, with
        `reclaim_on_start`, hand back the jobs a previous run had leased."""
        async with self.store.transaction() as s:
            await s.execute(delete(JobRow).where(JobRow.state.in_(("done", "canceled"))))
            if self.reclaim_on_start:
                await s.execute(update(JobRow).where(JobRow.state == "leased")
                                .values(state="ready", lease_owner=None, lease_until=None))

    async def close(self) -> None:
        self._wake.set()

    async def put(self, call_id: str, *, attempt: int = 1, due_at: datetime | None = None) -> bool:
        try:
            async with self.store.transaction() as s:
                s.add(JobRow(call_id=call_id, attempt=attempt, due_at=due_at or utcnow(), state="ready",
                             deliveries=0))
        except IntegrityError:
            return False
        self._wake.set()
        return True

    async def get(self, timeout: float) -> Job | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job, next_due = await self._take()
            if job:
                return job
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            wait = min(remaining, self.poll_s)
            if next_due is not None:
                wait = min(wait, max(0.0, (next_due - utcnow()).total_seconds()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _take(self) -> tuple[Job | None, datetime | None]:
        now = utcnow()
        deliverable = (JobRow.state == "ready") | ((JobRow.state == "leased") & (JobRow.lease_until < now))
        async with self.store.transaction() as s:
            row = (await s.execute(
                select(JobRow).where(deliverable, JobRow.due_at <= now)
                .order_by(JobRow.due_at, JobRow.id).limit(1).with_for_update(skip_locked=True)
            )).scalar_one_or_none()
            if row is None:
                next_due = (await s.execute(select(func.min(JobRow.due_at))
                                            .where(JobRow.state == "ready"))).scalar_one_or_none()
                return None, next_due
            row.state = "leased"
            row.lease_owner = self.consumer
            row.lease_until = now + timedelta(seconds=self.lease_s)
            row.deliveries += 1
            return Job(row.call_id, row.attempt, row.due_at, str(row.id)), None

    async def ack(self, job: Job) -> None:
        async with self.store.transaction() as s:
            await s.execute(update(JobRow).where(JobRow.id == int(job.token))
                            .values(state="done", lease_owner=None, lease_until=None))

    async def release(self, job: Job) -> None:
        async with self.store.transaction() as s:
            await s.execute(update(JobRow).where(JobRow.id == int(job.token), JobRow.state == "leased",
                                                 JobRow.lease_owner == self.consumer)
                            .values(state="ready", lease_owner=None, lease_until=None))
        self._wake.set()

    async def cancel(self, call_id: str) -> bool:
        async with self.store.transaction() as s:
            result = await s.execute(update(JobRow).where(JobRow.call_id == call_id,
                                                          JobRow.state.in_(("ready", "leased")))
                                     .values(state="canceled"))
            return bool(db.rowcount(result))

    async def depth(self) -> int:
        async with self.store.sessions() as s:
            return int((await s.execute(select(func.count()).select_from(JobRow)
                                        .where(JobRow.state.in_(("ready", "leased"))))).scalar_one())

    async def health(self) -> str:
        return f"local, {await self.depth()} waiting"
