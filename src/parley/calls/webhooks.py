"""Outbound webhooks: which status change sends which event, the signed body, and the sender that drains
the persisted outbox with exponential backoff (at least once, in order per call).

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

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from parley.calls.models import utcnow
from parley.calls.records import Call, TranscriptEntry
from parley.calls.states import CallStatus
from parley.logging import get_logger

if TYPE_CHECKING:
    from parley.calls.store import OutboxItem, Store

log = get_logger(__name__)

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
    """Backoff for failed deliveries: `base_s * factor**(attempt-1)`, capped, at most `max_attempts`."""

    base_s: float = 5.0
    factor: float = 2.0
    max_delay_s: float = 3600.0
    max_attempts: int = 10
    timeout_s: float = 10.0

    def delay(self, attempts_done: int) -> float:
        return min(self.max_delay_s, self.base_s * self.factor ** max(0, attempts_done - 1))


class WebhookSender:
    """Drains the outbox: one in-flight event per call, the oldest first; failures back off exponentially."""

    def __init__(self, store: Store, secret: str = "", *, timing: RetryTiming | None = None,
                 poll_s: float = 1.0, concurrency: int = 8) -> None:
        self.store = store
        self.secret = secret
        self.timing = timing or RetryTiming()
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._limit = asyncio.Semaphore(concurrency)

    def wake(self) -> None:
        """Look at the outbox now (called after something was added)."""
        self._wake.set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timing.timeout_s, follow_redirects=False)
        self._task = asyncio.create_task(self._run(), name="parley-webhooks")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._client:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook outbox pass failed; retrying")
                sent = 0
            if sent:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def drain_once(self) -> int:
        """Attempt every due head-of-line event once; returns how many were attempted."""
        items = await self.store.claim_webhooks(lease_s=self.timing.timeout_s * 3 + 5)
        if items:
            await asyncio.gather(*(self._deliver(i) for i in items))
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        from parley.calls import metrics

        async with self._limit:
            attempt = item.attempts + 1
            body = item.body.encode()
            ts = str(int(time.time()))
            event_id = json.loads(item.body).get("id", "")
            headers = {"Content-Type": "application/json", "User-Agent": "parley-webhooks",
                       "X-Parley-Event": item.event, "X-Parley-Event-Id": event_id,
                       "X-Parley-Attempt": str(attempt), TIMESTAMP_HEADER: ts}
            if self.secret:
                headers[SIGNATURE_HEADER] = sign(self.secret, ts, body)
            error = ""
            try:
                assert self._client is not None
                r = await self._client.post(item.url, content=body, headers=headers)
                if 200 <= r.status_code < 300:
                    await self.store.webhook_done(item.id)
                    metrics.WEBHOOK_DELIVERIES.labels(result="delivered").inc()
                    log.info("webhook delivered", call_id=item.call_id, webhook_event=item.event,
                             attempt=attempt)
                    return
                error = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            give_up = attempt >= self.timing.max_attempts
            retry_at = None if give_up else utcnow() + timedelta(seconds=self.timing.delay(attempt))
            await self.store.webhook_failed(item.id, error, retry_at)
            metrics.WEBHOOK_DELIVERIES.labels(result="dead" if give_up else "failed").inc()
            log.warning("webhook delivery failed", call_id=item.call_id, webhook_event=item.event,
                        attempt=attempt, error=error, gave_up=give_up)
