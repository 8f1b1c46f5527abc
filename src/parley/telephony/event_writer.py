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


def turn_marks(event: TurnMetrics) -> dict[str, float]:
    """The engine's per-turn marks as seconds after the end-of-turn decision (for `observe_turn`)."""
    marks = {"end_of_speech": 0.0}
    for name, value in (("stt_final", event.stt_final_ms), ("llm_first_token", event.llm_first_token_ms),
                        ("tts_first_audio", event.tts_first_audio_ms), ("first_audio_out", event.first_frame_out_ms)):
        if value is not None:
            marks[name] = value / 1000.0
    return marks


class CallEventWriter:
    """Stores one call's conversation events through `CallsService`, in order."""

    def __init__(self, calls: CallsService, call_id: str) -> None:
        self.calls = calls
        self.call_id = call_id
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.events: list[Event] = []
        self._task = asyncio.create_task(self._run(), name=f"events-{call_id}")

    def __call__(self, event: Event) -> None:
        self.queue.put_nowait(event)

    async def _run(self) -> None:
        while (event := await self.queue.get()) is not None:
            self.events.append(event)
            try:
                await self._store(event)
            except Exception:
                log.exception("could not store a conversation event", call_id=self.call_id, type=event.type)

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
            metrics.observe_turn(turn_marks(event))
        await self.calls.add_event(self.call_id, event.type, data)

    async def close(self) -> None:
        """Store everything still queued, then stop."""
        self.queue.put_nowait(None)
        await self._task
