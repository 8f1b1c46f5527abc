"""Plain, immutable snapshots of stored rows: what the service hands out (safe outside a DB session)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from parley.calls.models import CallRow, EventRow, TranscriptRow


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of a timestamp (None stays None)."""
    return value.isoformat() if value else None


@dataclass(frozen=True)
class Call:
    """A call record. `place_call` receives one; the API serialises one with `to_dict()`."""

    id: str
    direction: str
    status: str
    agent: str
    from_number: str | None
    to_number: str | None
    caller_name: str | None
    trunk: str | None
    variables: dict[str, Any]
    metadata: dict[str, Any]
    llm_prompt: str | None
    greeting: str | None
    webhook_url: str | None
    schedule_at: datetime | None
    max_retries: int | None
    retry_backoff_s: float | None
    attempt: int
    worker: str | None
    sip_call_id: str | None
    recording_path: str | None
    end_reason: str | None
    created_at: datetime
    updated_at: datetime
    dialed_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    channel: str = "sip"  # the transport: sip (phone) or webrtc (a browser)
    external_id: str | None = None  # the carrier's id (Twilio's CallSid)

    @classmethod
    def from_row(cls, row: CallRow) -> Call:
        return cls(
            id=row.id, direction=row.direction, status=row.status, agent=row.agent,
            from_number=row.from_number, to_number=row.to_number, caller_name=row.caller_name,
            trunk=row.trunk, variables=dict(row.variables or {}), metadata=dict(row.meta or {}),
            llm_prompt=row.llm_prompt, greeting=row.greeting, webhook_url=row.webhook_url,
            schedule_at=row.schedule_at, max_retries=row.max_retries, retry_backoff_s=row.retry_backoff_s,
            attempt=row.attempt, worker=row.worker, sip_call_id=row.sip_call_id,
            recording_path=row.recording_path, end_reason=row.end_reason, created_at=row.created_at,
            updated_at=row.updated_at, dialed_at=row.dialed_at, answered_at=row.answered_at,
            ended_at=row.ended_at, channel=row.channel or "sip", external_id=row.external_id,
        )

    @property
    def duration_s(self) -> float | None:
        """Seconds from answer to end (None when never answered or not ended)."""
        if self.answered_at and self.ended_at:
            return round((self.ended_at - self.answered_at).total_seconds(), 3)
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (timestamps as ISO 8601, the file path left out; `worker` names the worker
        that ran the call)."""
        out = asdict(self)
        out.pop("recording_path")
        out["has_recording"] = bool(self.recording_path)
        out["duration_s"] = self.duration_s
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out


@dataclass(frozen=True)
class TranscriptEntry:
    """One utterance."""

    role: str
    text: str
    at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: TranscriptRow) -> TranscriptEntry:
        return cls(role=row.role, text=row.text, at=row.at, metadata=dict(row.meta or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "text": self.text, "at": iso(self.at), "metadata": self.metadata}


@dataclass(frozen=True)
class CallEvent:
    """One timeline entry."""

    type: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: EventRow) -> CallEvent:
        return cls(type=row.type, at=row.at, data=dict(row.data or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "at": iso(self.at), "data": self.data}


@dataclass(frozen=True)
class CallDetail:
    """A call with its timeline, transcript and webhook deliveries (event, status, attempts, last error:
    a refused or failing webhook shows here)."""

    call: Call
    timeline: list[CallEvent]
    transcript: list[TranscriptEntry]
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.call.to_dict(), "timeline": [e.to_dict() for e in self.timeline],
                "transcript": [t.to_dict() for t in self.transcript], "webhooks": self.webhooks}
