"""Outbound webhooks, the contract: which status change sends which event, the body, its signature and the
retry timing. The sender that drains the persisted outbox (at least once, in order per call) is
`webhook_sender.py`; the store writes the events in the same transaction as the status change.

Every request is a `POST` of `application/json` with these headers:

* `X-Parley-Event`: the event type (`call.queued`, `call.ringing`, `call.answered`, `call.ended`, `call.failed`)
* `X-Parley-Event-Id`: stable id of the event (the same on every retry: use it to drop duplicates)
* `X-Parley-Timestamp`: Unix seconds when this attempt was signed
* `X-Parley-Signature`: `sha256=` + hex HMAC-SHA256 with `WEBHOOK_SECRET` over `timestamp + "." + raw body`
  (sent only when `WEBHOOK_SECRET` is set)
* `X-Parley-Attempt`: 1 for the first attempt, 2 for the first retry …

A 2xx answer counts as delivered; anything else (or no answer within the timeout) is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from parley.calls.models import utcnow
from parley.calls.records import Call, TranscriptEntry
from parley.calls.states import CallStatus
from parley.support.retry import Backoff

EVENTS = ("call.queued", "call.ringing", "call.answered", "call.ended", "call.failed")
SIGNATURE_HEADER = "X-Parley-Signature"
TIMESTAMP_HEADER = "X-Parley-Timestamp"


def event_for(previous: str | None, target: str) -> str | None:
    """The webhook event a move from `previous` to `target` sends (None for none, e.g. a retry)."""
    t = CallStatus(target)
    if t == CallStatus.QUEUED:
        return "call.queued" if previous is None else None
    return {
        CallStatus.RINGING: "call.ringing",
        CallStatus.IN_PROGRESS: "call.answered",
        CallStatus.COMPLETED: "call.ended",
        CallStatus.CANCELED: "call.ended",
        CallStatus.FAILED: "call.failed",
        CallStatus.BUSY: "call.failed",
        CallStatus.NO_ANSWER: "call.failed",
    }.get(t)


def build_body(event: str, call: Call, transcript: list[TranscriptEntry]) -> str:
    """The JSON body of one event (built once, stored in the outbox, identical on every retry)."""
    body: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event,
        "created_at": utcnow().isoformat(),
        "call": call.to_dict(),
    }
    if event in ("call.ended", "call.failed"):
        body["end_reason"] = call.end_reason
        body["transcript"] = [t.to_dict() for t in transcript]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC over `timestamp.body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    try:
        if abs(time.time() - int(timestamp)) > tolerance_s:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class RetryTiming:
    """Backoff for failed deliveries: `base_s * factor**(attempt-1)`, capped at `max_delay_s`, at most
    `max_attempts` attempts; `timeout_s` per request."""

    base_s: float = 5.0
    factor: float = 2.0
    max_delay_s: float = 3600.0
    max_attempts: int = 10
    timeout_s: float = 10.0

    @property
    def backoff(self) -> Backoff:
        return Backoff(first_s=self.base_s, factor=self.factor, max_s=self.max_delay_s)
