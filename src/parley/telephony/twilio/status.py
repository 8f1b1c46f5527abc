"""Twilio call statuses (status callbacks, `CallStatus`) in our call states: a pure mapping with reasons."""

from __future__ import annotations

from dataclasses import dataclass

#: Twilio `CallStatus` → (our status, reason for the record). `queued`/`initiated` change nothing.
_MAP: dict[str, tuple[str, str]] = {
    "ringing": ("ringing", "Twilio: ringing"),
    "in-progress": ("in_progress", "Twilio: answered"),
    "answered": ("in_progress", "Twilio: answered"),
    "completed": ("completed", "Twilio: call completed"),
    "busy": ("busy", "Twilio: busy"),
    "no-answer": ("no_answer", "Twilio: no answer"),
    "failed": ("failed", "Twilio: the call failed"),
    "canceled": ("canceled", "Twilio: canceled"),
}


@dataclass(frozen=True)
class StatusChange:
    """The state a Twilio status means for us, and why."""

    status: str
    reason: str


def map_status(twilio_status: str, *, answered_by: str | None = None, sip_code: str | None = None,
               duration: str | None = None) -> StatusChange | None:
    """Our state for a Twilio `CallStatus` (None for `queued`/`initiated` and unknown ones)."""
    found = _MAP.get((twilio_status or "").strip().lower())
    if found is None:
        return None
    status, reason = found
    details = []
    if answered_by:
        details.append(f"answered by {answered_by}")
    if sip_code and status in ("failed", "busy", "no_answer"):
        details.append(f"SIP {sip_code}")
    if duration and status == "completed":
        details.append(f"{duration} s")
    return StatusChange(status, reason + (f" ({', '.join(details)})" if details else ""))
