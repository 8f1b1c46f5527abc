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
            try:
                if isinstance(item, tuple):
                    await self.calls.add_event(self.call_id, *item)
                    continue
                self.events.append(item)
                await self._store(item)
            except Exception:
                log.exception("could not store a conversation event", call_id=self.call_id)

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
