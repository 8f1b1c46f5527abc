"""Engine events → the calls service: transcript entries, timeline events and latency metrics.

The conversation hands events over without waiting (an asyncio queue); one writer task per call stores
them in order, so a slow database never stalls the audio and nothing is lost: `close()` drains the
queue before the call is finished.
"""

from __future__ import annotations

import asyncio
from typing import Any

from parley.calls import metrics
from parley.calls.service import CallsService
from parley.engine.events import Event, TranscriptEntry, TurnMetrics
from parley.logging import get_logger

log = get_logger(__name__)

_ROLE = {"user": "caller", "agent": "agent"}
RETRIES = 12  # ~3 minutes of backoff before an event is only logged


class CallEventWriter:
    """Stores one call's conversation events through `CallsService`, in order."""

    def __init__(self, calls: CallsService, call_id: str) -> None:
        self.calls = calls
        self.call_id = call_id
        self.queue: asyncio.Queue[Event | tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.events: list[Event] = []
        self._task = asyncio.create_task(self._run(), name=f"events-{call_id}")

    def __call__(self, event: Event) -> None:
        self.queue.put_nowait(event)

    def note(self, type_: str, data: dict[str, Any]) -> None:
        """Queue a timeline event that is not a conversation event (a provider failover …)."""
        self.queue.put_nowait((type_, data))

    async def _run(self) -> None:
        while (item := await self.queue.get()) is not None:
            if not isinstance(item, tuple):
                self.events.append(item)
            await self._store_patiently(item)

    async def _store_patiently(self, item: Event | tuple[str, dict[str, Any]]) -> None:
        """Store one item, retrying with backoff while the database is busy or away (never drop silently)."""
        delay = 0.2
        for attempt in range(1, RETRIES + 1):
            try:
                if isinstance(item, tuple):
                    await self.calls.add_event(self.call_id, *item)
                else:
                    await self._store(item)
                return
            except Exception as exc:
                if attempt == RETRIES:
                    data = item[1] if isinstance(item, tuple) else item.to_dict()
                    log.error("gave up storing a conversation event; it is logged here instead",
                              call_id=self.call_id, event=data, error=str(exc) or type(exc).__name__)
                    return
                log.warning("storing a conversation event failed; retrying", call_id=self.call_id,
                            attempt=attempt, retry_in_s=delay, error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _store(self, event: Event) -> None:
        data: dict[str, Any] = event.to_dict()
        if isinstance(event, TranscriptEntry):
            if event.text.strip():
                await self.calls.add_transcript(
                    self.call_id, _ROLE.get(event.role, event.role), event.text,
                    metadata={"start": event.start, "end": event.end, "interrupted": event.interrupted,
                              "turn": event.turn},
                )
            return
        if isinstance(event, TurnMetrics):
            metrics.observe_turn(data)
        await self.calls.add_event(self.call_id, event.type, data)

    async def close(self) -> None:
        """Store everything still queued, then stop."""
        self.queue.put_nowait(None)
        await self._task
