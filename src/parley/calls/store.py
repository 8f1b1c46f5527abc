"""The calls repository (SQLAlchemy 2, async). Each public method is one transaction, so a status change,
its timeline entry and its webhook events are stored together or not at all (the outbox pattern); bursts
of transcript entries and events that several calls add at once share one (`calls/group_commit.py`). On
SQLite (one connection) a call's set-up — its record, its answer — goes before the queue of other writes
(`calls/connection_turns.py`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from parley.calls import db
from parley.calls.connection_turns import ConnectionTurns
from parley.calls.group_commit import GroupCommit
from parley.calls.models import CallRow, EventRow, TranscriptRow, WebhookRow, utcnow
from parley.calls.records import Call, CallDetail, CallEvent, TranscriptEntry, iso
from parley.calls.states import (
    INITIAL,
    TERMINAL,
    CallStatus,
    IllegalTransition,
    check_transition,
    parse_status,
)
from parley.calls.webhooks import build_body, event_for

#: Given a call, the webhook URL its events go to (None = no webhooks).
UrlResolver = Callable[[Call], str | None]

#: Timestamps set when a call enters a status.
_STAMPS = {CallStatus.DIALING: "dialed_at", CallStatus.IN_PROGRESS: "answered_at"}


class CallNotFound(KeyError):
    """No call with that id."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call with id {call_id!r}")
        self.call_id = call_id

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class _Burst:
    """One `add_batch`: a call's rows for the two tables, in order."""

    call_id: str
    transcripts: list[dict[str, Any]]
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class OutboxItem:
    """A claimed webhook delivery."""

    id: int
    call_id: str
    event: str
    url: str
    body: str
    attempts: int


class Store:
    """Async repository over calls, transcripts, timelines and the webhook outbox."""

    def __init__(self, engine: AsyncEngine, *, webhook_url_for: UrlResolver | None = None) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        #: SQLite has one connection: a call's set-up takes it before the queue of other work
        self._turns = ConnectionTurns() if engine.dialect.name == "sqlite" else None
        self.webhook_url_for: UrlResolver = webhook_url_for or (lambda call: call.webhook_url)
        #: Called after a commit that added webhook events (the sender wakes up).
        self.on_outbox: Callable[[], None] = lambda: None
        #: concurrent calls' bursts of transcript entries and events, stored together (`add_batch`)
        self.bursts: GroupCommit[_Burst] = GroupCommit(self._insert_bursts, name="transcripts and events")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Store:
        """A store on `url` (see `parley.calls.db.normalise_url`)."""
        return cls(db.create_engine(url), **kwargs)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    async def upgrade(self) -> None:
        """Apply the migrations (idempotent)."""
        await db.upgrade(self.engine)

    async def close(self) -> None:
        """Store the bursts still waiting, then release the connections."""
        await self.bursts.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def sessions(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session. On SQLite it waits for the one connection's turn; `urgent` (a call's set-up, before
        its 200 OK) goes before the queue of other work (`ConnectionTurns`)."""
        if self._turns is None:
            async with self._sessions() as session:
                yield session
            return
        async with self._turns.turn(urgent=urgent), self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one committed-or-rolled-back transaction (`urgent`: see `sessions`)."""
        async with self.sessions(urgent=urgent) as session, session.begin():
            yield session

    async def ping(self) -> str:
        """Health: a round trip to the database."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return f"{self.backend} ok"

    # --- calls --------------------------------------------------------------------------------

    async def add_call(self, values: dict[str, Any]) -> Call:
        """Insert a call (with its first timeline entry and webhook event). `values` are CallRow fields."""
        status = parse_status(values.get("status", CallStatus.QUEUED))
        if status not in INITIAL:
            raise ValueError(f"a new call starts as one of {', '.join(sorted(INITIAL))}, not {status}")
        now = utcnow()
        values = {"id": str(uuid.uuid4()), "attempt": 1, "variables": {}, "meta": {}, **values,
                  "status": status.value, "created_at": now, "updated_at": now}
        if status == CallStatus.IN_PROGRESS:
            values.setdefault("answered_at", now)
        async with self.transaction(urgent=True) as s:  # an inbound call's 200 OK waits for it
            row = CallRow(**values)
            s.add(row)
            await s.flush()
            call = Call.from_row(row)
            s.add(EventRow(call_id=call.id, type="status", at=now, data={"to": status.value}))
            queued = await self._outbox(s, call, event_for(None, status), [])
        if queued:
            self.on_outbox()
        return call

    async def transition(
        self,
        call_id: str,
        target: str,
        *,
        reason: str | None = None,
        updates: dict[str, Any] | None = None,
        expect_attempt: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> Call:
        """Move a call to `target`; raises `IllegalTransition` (logged) if the state machine forbids it,
        `CallNotFound` if there is no such call. `expect_attempt` makes it a compare-and-set on the attempt.
        An answered call's move to `in_progress` is urgent (its conversation waits for it; see `sessions`)."""
        target_status = parse_status(target)
        async with self.transaction(urgent=target_status == CallStatus.IN_PROGRESS) as s:
            row = await self._lock(s, call_id)
            if expect_attempt is not None and row.attempt != expect_attempt:
                check_transition(call_id, row.status, target_status)
                raise IllegalTransition(call_id, f"{row.status}", f"{target_status} (attempt {expect_attempt}, "
                                        f"record at {row.attempt})")
            call, queued = await self._apply(s, row, target_status, reason, updates, data)
        if queued:
            self.on_outbox()
        return call

    async def transitions(self, call_id: str, decide: Callable[[Call], list[tuple[str, str | None]]]
                          ) -> tuple[Call, bool] | None:
        """Decide on a call as it is stored and apply what was decided, in one transaction (the row stays
        locked in between, so nothing changes it under the decision): `decide(call)` returns the status
        changes to make, in order, as (status, reason) — none to leave the call as it is. Returns the call
        after them and whether any was made; None when there is no such call. One round of reads and writes
        where reading first and transitioning after took two transactions per call's end."""
        queued = False
        async with self.transaction() as s:
            row = (await s.execute(select(CallRow).where(CallRow.id == call_id).with_for_update())
                   ).scalar_one_or_none()
            if row is None:
                return None
            call = Call.from_row(row)
            steps = decide(call)
            for target, reason in steps:
                call, q = await self._apply(s, row, parse_status(target), reason, None, None)
                queued = queued or q
        if queued:
            self.on_outbox()
        return call, bool(steps)

    async def _apply(self, s: AsyncSession, row: CallRow, target_status: CallStatus, reason: str | None,
                     updates: dict[str, Any] | None, data: dict[str, Any] | None) -> tuple[Call, bool]:
        """One status change of a locked row: the row, its timeline entry and its webhook event (in `s`).
        Returns the call after it and whether a webhook event was queued."""
        call_id = row.id
        current = row.status
        check_transition(call_id, current, target_status)
        now = utcnow()
        row.status = target_status.value
        row.updated_at = now
        stamp = _STAMPS.get(target_status)
        if stamp:
            setattr(row, stamp, now)
        if target_status in TERMINAL:
            row.ended_at = now
            row.end_reason = reason or target_status.value
        for key, value in (updates or {}).items():
            setattr(row, key, value)
        event = {"from": current, "to": target_status.value, **({"reason": reason} if reason else {}),
                 **(data or {})}
        s.add(EventRow(call_id=call_id, type="status", at=now, data=event))
        await s.flush()
        call = Call.from_row(row)
        name = event_for(current, target_status)
        queued = False
        if name and self.webhook_url_for(call):
            transcript = await self._transcript(s, call_id) if target_status in TERMINAL else []
            queued = await self._outbox(s, call, name, transcript)
        return call, queued

    async def requeue(self, call_id: str, *, outcome: str, reason: str, due_at: datetime) -> Call:
        """After a failed attempt with retries left: back to `queued` with the next attempt number."""
        async with self.transaction() as s:
            row = await self._lock(s, call_id)
            current = row.status
            check_transition(call_id, current, CallStatus.QUEUED)
            now = utcnow()
            s.add(EventRow(call_id=call_id, type="attempt_failed", at=now,
                           data={"attempt": row.attempt, "outcome": outcome, "reason": reason,
                                 "retry_at": due_at.isoformat()}))
            row.status = CallStatus.QUEUED.value
            row.attempt += 1
            row.schedule_at = due_at
            row.updated_at = now
            row.dialed_at = None
            row.worker = None
            s.add(EventRow(call_id=call_id, type="status", at=now,
                           data={"from": current, "to": "queued", "reason": f"retry after {outcome}",
                                 "attempt": row.attempt}))
            await s.flush()
            return Call.from_row(row)

    async def update_call(self, call_id: str, **fields: Any) -> Call:
        """Set plain fields (sip_call_id, trunk, recording_path, worker, metadata …) without a status change."""
        allowed = {"sip_call_id", "trunk", "recording_path", "worker", "meta", "variables", "from_number",
                   "external_id", "channel"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        async with self.transaction() as s:
            row = await self._lock(s, call_id)
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            await s.flush()
            return Call.from_row(row)

    async def add_transcript(self, call_id: str, role: str, text_: str, *, at: datetime | None = None,
                             metadata: dict[str, Any] | None = None) -> None:
        """Append one utterance to a call's transcript."""
        await self.add_batch(call_id, [("transcript", {"role": role, "text": text_, "at": at,
                                                       "metadata": metadata})])

    async def add_event(self, call_id: str, type_: str, data: dict[str, Any] | None = None,
                        *, at: datetime | None = None) -> None:
        """Append an entry to a call's timeline."""
        await self.add_batch(call_id, [("event", {"type": type_, "data": data, "at": at})])

    async def add_batch(self, call_id: str, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Append a burst of a call's transcript entries and timeline events in one transaction (the event
        writer's batching: one round trip per burst instead of one per event). Each entry is
        `("transcript", {role, text, at?, metadata?})` or `("event", {type, data?, at?})`, stored in order.

        Plain multi-row INSERTs, no read first: the rows' foreign key to the call is the existence check
        (`CallNotFound` when it fails), so a burst costs one INSERT per table and the commit. Bursts of
        other calls submitted meanwhile share that transaction (`GroupCommit`): a worker with many calls
        talking writes once per round, not once per call."""
        if not entries:
            return
        burst = _Burst(call_id, [], [])
        for kind, item in entries:
            at = item.get("at") or utcnow()
            if kind == "transcript":
                burst.transcripts.append({"call_id": call_id, "role": item["role"], "text": item["text"],
                                          "at": at, "meta": item.get("metadata") or {}})
            elif kind == "event":
                burst.events.append({"call_id": call_id, "type": item["type"], "at": at,
                                     "data": item.get("data") or {}})
            else:
                raise ValueError(f"unknown batch entry kind {kind!r} (transcript or event)")
        await self.bursts.submit(burst)

    async def _insert_bursts(self, bursts: list[_Burst]) -> None:
        """Several calls' bursts in one transaction: one INSERT per table."""
        transcripts = [row for b in bursts for row in b.transcripts]
        events = [row for b in bursts for row in b.events]
        try:
            async with self.transaction() as s:
                if transcripts:
                    await s.execute(insert(TranscriptRow), transcripts)
                if events:
                    await s.execute(insert(EventRow), events)
        except IntegrityError:
            if len(bursts) == 1 and await self.get_call(bursts[0].call_id) is None:
                raise CallNotFound(bursts[0].call_id) from None
            raise

    async def get_call(self, call_id: str) -> Call | None:
        async with self.sessions() as s:
            row = (await s.execute(select(CallRow).where(CallRow.id == call_id))).scalar_one_or_none()
            return Call.from_row(row) if row else None

    async def get_by_sip_call_id(self, sip_call_id: str) -> Call | None:
        async with self.sessions() as s:
            row = (await s.execute(select(CallRow).where(CallRow.sip_call_id == sip_call_id)
                                   .order_by(CallRow.seq.desc()).limit(1))).scalar_one_or_none()
            return Call.from_row(row) if row else None

    async def get_detail(self, call_id: str) -> CallDetail | None:
        """A call with timeline, transcript and webhook deliveries, or None."""
        async with self.sessions() as s:
            row = (await s.execute(select(CallRow).where(CallRow.id == call_id))).scalar_one_or_none()
            if row is None:
                return None
            events = (await s.execute(select(EventRow).where(EventRow.call_id == call_id)
                                      .order_by(EventRow.id))).scalars()
            timeline = [CallEvent.from_row(e) for e in events]
            hooks = (await s.execute(select(WebhookRow).where(WebhookRow.call_id == call_id)
                                     .order_by(WebhookRow.id))).scalars()
            deliveries = [{"event": h.event, "status": h.status, "attempts": h.attempts,
                           "last_error": h.last_error} for h in hooks]
            return CallDetail(Call.from_row(row), timeline, await self._transcript(s, call_id), deliveries)

    async def transcript(self, call_id: str) -> list[TranscriptEntry]:
        async with self.sessions() as s:
            await self._exists(s, call_id)
            return await self._transcript(s, call_id)

    async def list_calls(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        direction: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_seq: int | None = None,
        limit: int = 50,
        channel: str | None = None,
        external_id: str | None = None,
        campaign: str | None = None,
    ) -> tuple[list[Call], int | None]:
        """Newest first. Returns the page and the cursor (a `seq`) of the next page, or None.
        `campaign`: only calls a campaign placed (`metadata.campaign_id`)."""
        q = select(CallRow).order_by(CallRow.seq.desc()).limit(limit + 1)
        if campaign:
            q = q.where(CallRow.meta["campaign_id"].as_string() == campaign)
        if status:
            q = q.where(CallRow.status == status)
        if agent:
            q = q.where(CallRow.agent == agent)
        if direction:
            q = q.where(CallRow.direction == direction)
        if channel:
            q = q.where(CallRow.channel == channel)
        if since:
            q = q.where(CallRow.created_at >= since)
        if until:
            q = q.where(CallRow.created_at < until)
        if before_seq is not None:
            q = q.where(CallRow.seq < before_seq)
        if external_id:
            q = q.where(CallRow.external_id == external_id)
        async with self.sessions() as s:
            rows = list((await s.execute(q)).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return [Call.from_row(r) for r in rows], (rows[-1].seq if more and rows else None)

    async def iter_calls(self, *, since: datetime | None = None, until: datetime | None = None,
                         batch: int = 500) -> AsyncIterator[Call]:
        """Every call created in [since, until), oldest first, fetched in batches."""
        last = 0
        while True:
            q = select(CallRow).where(CallRow.seq > last).order_by(CallRow.seq).limit(batch)
            if since:
                q = q.where(CallRow.created_at >= since)
            if until:
                q = q.where(CallRow.created_at < until)
            async with self.sessions() as s:
                rows = list((await s.execute(q)).scalars())
            if not rows:
                return
            for r in rows:
                yield Call.from_row(r)
            last = rows[-1].seq

    async def count_calls(self, *, since: datetime | None = None, until: datetime | None = None) -> int:
        q = select(func.count()).select_from(CallRow)
        if since:
            q = q.where(CallRow.created_at >= since)
        if until:
            q = q.where(CallRow.created_at < until)
        async with self.sessions() as s:
            return int((await s.execute(q)).scalar_one())

    async def counts_by_status(self) -> dict[str, int]:
        async with self.sessions() as s:
            rows = await s.execute(select(CallRow.status, func.count()).group_by(CallRow.status))
            return {status: int(n) for status, n in rows}

    async def calls_in(self, statuses: set[str], *, worker: str | None = None) -> list[Call]:
        """Calls currently in one of `statuses` (optionally owned by `worker`), oldest first."""
        q = select(CallRow).where(CallRow.status.in_(sorted(statuses))).order_by(CallRow.seq)
        if worker is not None:
            q = q.where(CallRow.worker == worker)
        async with self.sessions() as s:
            return [Call.from_row(r) for r in (await s.execute(q)).scalars()]

    async def record_analysis(self, call_id: str, analysis: dict[str, Any],
                              body: Callable[[CallDetail, dict[str, Any]], str], *, resend: bool = False) -> bool:
        """Store a post-call analysis on the call (`metadata.analysis`, timeline `analysis`) and, in the same
        transaction, queue its `call.analyzed` webhook: once per call unless `resend`. True when queued."""
        async with self.transaction() as s:
            row = await self._lock(s, call_id)
            row.meta = {**(row.meta or {}), "analysis": analysis}
            row.updated_at = utcnow()
            s.add(EventRow(call_id=call_id, type="analysis", at=utcnow(),
                           data={"valid": analysis.get("valid"), "success": analysis.get("success")}))
            await s.flush()
            call = Call.from_row(row)
            url = self.webhook_url_for(call)
            queued = False
            if url:
                sent = (await s.execute(select(WebhookRow.id).where(
                    WebhookRow.call_id == call_id, WebhookRow.event == "call.analyzed").limit(1))).scalar_one_or_none()
                if sent is None or resend:
                    events = (await s.execute(select(EventRow).where(EventRow.call_id == call_id)
                                              .order_by(EventRow.id))).scalars()
                    detail = CallDetail(call, [CallEvent.from_row(e) for e in events],
                                        await self._transcript(s, call_id))
                    s.add(WebhookRow(call_id=call_id, event="call.analyzed", url=url, body=body(detail, analysis),
                                     status="pending", attempts=0, next_attempt_at=utcnow()))
                    queued = True
        if queued:
            self.on_outbox()
        return queued

    # --- webhook outbox -----------------------------------------------------------------------

    async def claim_webhooks(self, *, lease_s: float = 60.0, limit: int = 50) -> list[OutboxItem]:
        """The oldest pending event of each call that is due, leased to this caller for `lease_s`."""
        now = utcnow()
        heads = (select(func.min(WebhookRow.id)).where(WebhookRow.status == "pending")
                 .group_by(WebhookRow.call_id))
        q = (select(WebhookRow).where(WebhookRow.id.in_(heads), WebhookRow.next_attempt_at <= now,
                                      (WebhookRow.locked_until.is_(None)) | (WebhookRow.locked_until < now))
             .order_by(WebhookRow.id).limit(limit))
        out: list[OutboxItem] = []
        async with self.transaction() as s:
            for row in (await s.execute(q)).scalars():
                claimed = await s.execute(
                    update(WebhookRow)
                    .where(WebhookRow.id == row.id, WebhookRow.status == "pending",
                           (WebhookRow.locked_until.is_(None)) | (WebhookRow.locked_until < now))
                    .values(locked_until=now + timedelta(seconds=lease_s))
                    .execution_options(synchronize_session=False)
                )
                if db.rowcount(claimed) == 1:
                    out.append(OutboxItem(row.id, row.call_id, row.event, row.url, row.body, row.attempts))
        return out

    async def webhook_done(self, item_id: int) -> None:
        async with self.transaction() as s:
            await s.execute(update(WebhookRow).where(WebhookRow.id == item_id).values(
                status="delivered", delivered_at=utcnow(), attempts=WebhookRow.attempts + 1,
                locked_until=None, last_error=None))

    async def webhook_failed(self, item_id: int, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt; `retry_at=None` gives up (status `dead`)."""
        values: dict[str, Any] = {"attempts": WebhookRow.attempts + 1, "locked_until": None,
                                  "last_error": error[:2000]}
        if retry_at is None:
            values["status"] = "dead"
        else:
            values["next_attempt_at"] = retry_at
        async with self.transaction() as s:
            await s.execute(update(WebhookRow).where(WebhookRow.id == item_id).values(**values))

    async def webhook_counts(self) -> dict[str, int]:
        async with self.sessions() as s:
            rows = await s.execute(select(WebhookRow.status, func.count()).group_by(WebhookRow.status))
            return {status: int(n) for status, n in rows}

    async def webhooks_for(self, call_id: str) -> list[dict[str, Any]]:
        """Every outbox row of a call, in order (for inspection and tests)."""
        async with self.sessions() as s:
            rows = (await s.execute(select(WebhookRow).where(WebhookRow.call_id == call_id)
                                    .order_by(WebhookRow.id))).scalars()
            return [{"id": r.id, "event": r.event, "status": r.status, "attempts": r.attempts,
                     "url": r.url, "last_error": r.last_error, "created_at": iso(r.created_at),
                     "delivered_at": iso(r.delivered_at),
                     "next_attempt_at": iso(r.next_attempt_at) if r.status == "pending" else None}
                    for r in rows]

    # --- helpers --------------------------------------------------------------------------------

    async def _lock(self, s: AsyncSession, call_id: str) -> CallRow:
        row = (await s.execute(select(CallRow).where(CallRow.id == call_id).with_for_update())
               ).scalar_one_or_none()
        if row is None:
            raise CallNotFound(call_id)
        return row

    async def _exists(self, s: AsyncSession, call_id: str) -> None:
        found = (await s.execute(select(CallRow.seq).where(CallRow.id == call_id))).scalar_one_or_none()
        if found is None:
            raise CallNotFound(call_id)

    async def _transcript(self, s: AsyncSession, call_id: str) -> list[TranscriptEntry]:
        rows = (await s.execute(select(TranscriptRow).where(TranscriptRow.call_id == call_id)
                                .order_by(TranscriptRow.id))).scalars()
        return [TranscriptEntry.from_row(r) for r in rows]

    async def _outbox(self, s: AsyncSession, call: Call, event: str | None,
                      transcript: list[TranscriptEntry]) -> bool:
        if not event:
            return False
        url = self.webhook_url_for(call)
        if not url:
            return False
        s.add(WebhookRow(call_id=call.id, event=event, url=url, body=build_body(event, call, transcript),
                         status="pending", attempts=0, next_attempt_at=utcnow()))
        return True
