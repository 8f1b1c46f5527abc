"""The webhook sender: drains the persisted outbox (`Store.claim_webhooks`), one in-flight event per call and
the oldest first, so delivery is at least once and in order per call. A failed attempt is stored with the
time of the next one (`RetryTiming`, exponential backoff); after `max_attempts` the event is `dead`.
Every request obeys the egress policy (`support/egress.py`): an address the policy refuses (loopback,
private, metadata … unless `WEBHOOK_ALLOWED_HOSTS` allows it) makes the event `dead` at once, with the
reason as its `last_error` (shown in the call's `webhooks` in the API).
What is sent (events, body, headers, signature) is the contract in `webhooks.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import httpx

from parley.calls import metrics
from parley.calls.models import utcnow
from parley.calls.store import OutboxItem, Store
from parley.calls.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, RetryTiming, sign
from parley.logging import get_logger
from parley.support.egress import EgressPolicy
from parley.support.egress_http import EgressBlocked, guarded_client
from parley.support.taskset import TaskSet

log = get_logger(__name__)


class WebhookSender:
    """Drains the outbox: one in-flight event per call, the oldest first; failures back off exponentially."""

    def __init__(self, store: Store, secret: str = "", *, timing: RetryTiming | None = None,
                 poll_s: float = 1.0, concurrency: int = 8, policy: EgressPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or EgressPolicy()
        self.secret = secret
        self.timing = timing or RetryTiming()
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._tasks = TaskSet("webhooks")
        self._client: httpx.AsyncClient | None = None
        self._limit = asyncio.Semaphore(concurrency)

    def wake(self) -> None:
        """Look at the outbox now (called after something was added)."""
        self._wake.set()

    async def start(self) -> None:
        self._client = guarded_client(self.policy, timeout=self.timing.timeout_s, follow_redirects=False)
        self._tasks.spawn(self._run(), name="parley-webhooks")

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        if self._client:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.drain_once()
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

    def _headers(self, item: OutboxItem, attempt: int, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": "parley-webhooks",
                   "X-Parley-Event": item.event, "X-Parley-Event-Id": json.loads(item.body).get("id", ""),
                   "X-Parley-Attempt": str(attempt), TIMESTAMP_HEADER: ts}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, ts, body)
        return headers

    async def _deliver(self, item: OutboxItem) -> None:
        async with self._limit:
            attempt = item.attempts + 1
            body = item.body.encode()
            refused = False
            if self._client is None:
                raise RuntimeError("the webhook sender is not started: call start() first")
            try:
                r = await self._client.post(item.url, content=body, headers=self._headers(item, attempt, body))
                if 200 <= r.status_code < 300:
                    await self.store.webhook_done(item.id)
                    metrics.WEBHOOK_DELIVERIES.labels(result="delivered").inc()
                    log.info("webhook delivered", call_id=item.call_id, webhook_event=item.event,
                             attempt=attempt)
                    return
                error = f"HTTP {r.status_code}"
            except EgressBlocked as exc:
                error, refused = str(exc), True
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            give_up = refused or attempt >= self.timing.max_attempts
            retry_at = None if give_up else utcnow() + timedelta(seconds=self.timing.backoff.delay(attempt))
            await self.store.webhook_failed(item.id, error, retry_at)
            metrics.WEBHOOK_DELIVERIES.labels(result="dead" if give_up else "failed").inc()
            log.warning("webhook delivery failed", call_id=item.call_id, webhook_event=item.event,
                        attempt=attempt, error=error, gave_up=give_up, refused=refused)
