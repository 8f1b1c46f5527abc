"""Engine events → the calls service: transcript entries, timeline events and latency metrics.

The conversation hands events over without waiting (an asyncio queue); one writer task per call stores
them in order, so a slow database never stalls the audio and nothing is lost: `close()` drains the
queue before the call is finished. What piles up while a write is in flight goes in the next write, as one
transaction (a burst), and the bursts of other calls written meanwhile share that transaction
(`Store.add_batch`), so a busy store sees fewer, bigger writes instead of falling further behind.
"""

from __future__ import annotations

import asyncio
from typing import Any

from parley.calls import metrics
from parley.calls.service import CallsService
from parley.engine.events import Event, TranscriptEntry, TurnMetrics
from parley.logging import get_logger
from parley.support.retry import Backoff, retry_async
from parley.support.taskset import TaskSet

log = get_logger(__name__)

_ROLE = {"user": "caller", "agent": "agent"}
ATTEMPTS = 12  # ~3 minutes of backoff (BACKOFF) before an event is only logged
BACKOFF = Backoff(first_s=0.2, factor=2.0, max_s=30.0)


class CallEventWriter:
    """Stores one call's conversation events through `CallsService`, in order; a failed write is tried
    `attempts` times in all, `backoff` apart, before the event is only logged."""

    def __init__(self, calls: CallsService, call_id: str, *, backoff: Backoff = BACKOFF,
                 attempts: int = ATTEMPTS) -> None:
        self.calls = calls
        self.call_id = call_id
        self.backoff = backoff
        self.attempts = attempts
        self.queue: asyncio.Queue[Event | tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.events: list[Event] = []
        self._tasks = TaskSet(f"events-{call_id}")
        self._task = self._tasks.spawn(self._run(), name=f"events-{call_id}")

    def __call__(self, event: Event) -> None:
        self.queue.put_nowait(event)

    def note(self, type_: str, data: dict[str, Any]) -> None:
        """Queue a timeline event that is not a conversation event (a provider failover …)."""
        self.queue.put_nowait((type_, data))

    async def _run(self) -> None:
        """Take everything queued at once (a burst) and store it in one transaction; if that fails, item
        by item with the patient retry, so one bad item never holds back the others."""
        done = False
        while not done:
            burst = [await self.queue.get()]
            while not self.queue.empty():
                burst.append(self.queue.get_nowait())
            if None in burst:
                burst, done = burst[:burst.index(None)], True
            items = [i for i in burst if i is not None]
            for item in items:
                if not isinstance(item, tuple):
                    self.events.append(item)
                    if isinstance(item, TurnMetrics):
                        metrics.observe_turn(item.to_dict())
            if not items:
                continue
            if len(items) > 1:
                try:
                    await self.calls.add_batch(self.call_id, [e for i in items if (e := self._entry(i))])
                    continue
                except Exception as exc:  # noqa: BLE001 - fall back to one by one, with retries
                    log.info("storing a burst of events failed; storing them one by one", call_id=self.call_id,
                             events=len(items), error=str(exc) or type(exc).__name__)
            for item in items:
                await self._store_patiently(item)

    @staticmethod
    def _entry(item: Event | tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
        """The store's batch entry for an item (None: nothing to store, e.g. an empty utterance)."""
        if isinstance(item, tuple):
            return "event", {"type": item[0], "data": item[1]}
        if isinstance(item, TranscriptEntry):
            if not item.text.strip():
                return None
            return "transcript", {"role": _ROLE.get(item.role, item.role), "text": item.text,
                                  "metadata": {"start": item.start, "end": item.end,
                                               "interrupted": item.interrupted, "turn": item.turn}}
        return "event", {"type": item.type, "data": item.to_dict()}

    async def _store_patiently(self, item: Event | tuple[str, dict[str, Any]]) -> None:
        """Store one item, retrying with backoff while the database is busy or away (never drop silently)."""

        def retrying(attempt: int, exc: BaseException, delay_s: float) -> None:
            log.warning("storing a conversation event failed; retrying", call_id=self.call_id,
                        attempt=attempt, retry_in_s=delay_s, error=str(exc) or type(exc).__name__)

        try:
            await retry_async(lambda: self._store(item), backoff=self.backoff, attempts=self.attempts,
                              on_retry=retrying)
        except Exception as exc:
            data = item[1] if isinstance(item, tuple) else item.to_dict()
            log.error("gave up storing a conversation event; it is logged here instead",
                      call_id=self.call_id, lost_event=data, error=str(exc) or type(exc).__name__)

    async def _store(self, item: Event | tuple[str, dict[str, Any]]) -> None:
        if isinstance(item, tuple):
            await self.calls.add_event(self.call_id, *item)
            return
        data: dict[str, Any] = item.to_dict()
        if isinstance(item, TranscriptEntry):
            if item.text.strip():
                await self.calls.add_transcript(
                    self.call_id, _ROLE.get(item.role, item.role), item.text,
                    metadata={"start": item.start, "end": item.end, "interrupted": item.interrupted,
                              "turn": item.turn},
                )
            return
        await self.calls.add_event(self.call_id, item.type, data)

    async def close(self) -> None:
        """Store everything still queued, then stop."""
        self.queue.put_nowait(None)
        await self._task
