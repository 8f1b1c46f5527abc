"""Conversation events → JSON text messages on the browser's `events` data channel (docs/webrtc.md).

Messages: `{"type": "transcript", "role": "caller"|"agent", "text", "final"}`,
`{"type": "state", "state": "connected"|"listening"|"thinking"|"speaking"|"interrupted"}` and, last,
`{"type": "ended", "reason"}`. Messages sent before the page's channel is open wait for it (in order).
"""

from __future__ import annotations

import json
from typing import Any

from aiortc import RTCDataChannel

from parley.engine.events import ConversationStarted, Event, Interruption, TranscriptEntry, TurnDecision, TurnMetrics
from parley.logging import get_logger

log = get_logger(__name__)

LABEL = "events"
_ROLE = {"user": "caller", "agent": "agent"}
_MAX_PENDING = 200


def message_for(event: Event) -> list[dict[str, Any]]:
    """The page messages one engine event makes (often none)."""
    if isinstance(event, ConversationStarted):
        return [{"type": "state", "state": "listening"}]
    if isinstance(event, TranscriptEntry):
        if not event.text.strip():
            return []
        out: list[dict[str, Any]] = [{"type": "transcript", "role": _ROLE.get(event.role, event.role),
                                      "text": event.text, "final": True}]
        if event.role == "agent":
            out.append({"type": "state", "state": "listening"})
        return out
    if isinstance(event, TurnDecision) and event.kind in ("finished", "timeout", "silence"):
        return [{"type": "state", "state": "thinking"}]
    if isinstance(event, TurnMetrics):
        return [{"type": "state", "state": "speaking"}]
    if isinstance(event, Interruption):
        state = {"barge_in": "interrupted", "resumed": "speaking"}.get(event.kind)
        return [{"type": "state", "state": state}] if state else []
    return []


class EventRelay:
    """Sends page messages on the `events` data channel once the page has opened it."""

    def __init__(self) -> None:
        self.channel: RTCDataChannel | None = None
        self.sent: list[dict[str, Any]] = []
        self._pending: list[str] = []

    def attach(self, channel: RTCDataChannel) -> None:
        """Use `channel` (the page's `events` channel) from now on."""
        self.channel = channel
        channel.on("open", self._flush)
        if channel.readyState == "open":
            self._flush()

    def __call__(self, event: Event) -> None:
        for message in message_for(event):
            self.send(message)

    def send(self, message: dict[str, Any]) -> None:
        """Send (or queue until open) one message."""
        text = json.dumps(message)
        self.sent.append(message)
        if self.channel is not None and self.channel.readyState == "open":
            self._send(text)
        elif len(self._pending) < _MAX_PENDING:
            self._pending.append(text)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for text in pending:
            self._send(text)

    def _send(self, text: str) -> None:
        assert self.channel is not None
        try:
            self.channel.send(text)
        except Exception as exc:  # the page closed the channel meanwhile
            log.debug("events channel send failed", error=str(exc) or type(exc).__name__)
