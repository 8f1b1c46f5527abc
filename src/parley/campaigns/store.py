"""Campaigns, recipients, attempts and the DNC list in the calls database (async, one transaction per
method). Recipients are imported in batches from a streamed CSV, so a 100,000-row file never sits in
memory; the runner claims a recipient with a compare-and-set, so a row has at most one call at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from parley.calls import db
from parley.calls.models import CallRow, utcnow
from parley.calls.store import Store
from parley.campaigns.config import CampaignConfig
from parley.campaigns.csv_import import Recipient, RowError, read_recipients
from parley.campaigns.models import AttemptRow, CampaignRow, DncRow, RecipientRow
from parley.campaigns.numbers import normalise

STATES = ("draft", "running", "paused", "canceled", "completed")
#: Allowed state changes by command.
MOVES: dict[str, dict[str, str]] = {
    "start": {"draft": "running", "paused": "running"},
    "resume": {"paused": "running", "draft": "running"},
    "pause": {"running": "paused"},
    "cancel": {"draft": "canceled", "running": "canceled", "paused": "canceled"},
}
#: Import errors kept on the campaign (the count is always exact).
MAX_KEPT_ERRORS = 1000


class CampaignNotFound(KeyError):
    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"no campaign with id {campaign_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class CampaignStateError(ValueError):
    """A command the campaign's state does not allow (`pause` a canceled campaign …)."""


@dataclass(frozen=True)
class Campaign:
    """A campaign with its progress counts."""

    id: str
    name: str
    agent: str
    state: str
    config: CampaignConfig
    rows_total: int
    rows_bad: int
    import_errors: list[dict[str, Any]]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: CampaignRow, counts: dict[str, int] | None = None,
                 outcomes: dict[str, int] | None = None) -> Campaign:
        return cls(row.id, row.name, row.agent, row.state, CampaignConfig.model_validate(row.config or {}),
                   row.rows_total, row.rows_bad, list(row.import_errors or []), row.created_at, row.started_at,
                   row.finished_at, counts or {}, outcomes or {})

    def to_dict(self, *, errors: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "name": self.name, "agent": self.agent, "state": self.state,
            "config": self.config.model_dump(mode="json", exclude_none=True),
            "rows_total": self.rows_total, "rows_bad": self.rows_bad,
            "counts": {"total": self.rows_total, "queued": self.counts.get("pending", 0),
                       "in_progress": self.counts.get("calling", 0), "completed": self.counts.get("done", 0)},
            "outcomes": self.outcomes,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
        if errors:
            out["import_errors"] = self.import_errors
        return out


@dataclass(frozen=True)
class ImportReport:
    """What an import accepted and refused (errors: the first `MAX_KEPT_ERRORS`)."""

    accepted: int
    bad: int
    errors: list[RowError]


@dataclass(frozen=True)
class Due:
    """A recipient the runner looks at."""

    id: int
    line: int
    number: str
    zone: str | None
    variables: dict[str, Any]
    metadata: dict[str, Any]
    attempts: int
    call_id: str | None


def _due(row: RecipientRow) -> Due:
    return Due(row.id, row.line, row.number, row.zone, dict(row.variables or {}), dict(row.meta or {}),
               row.attempts, row.call_id)


class CampaignStore:
    """Campaign data on the calls store's engine."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- campaigns ------------------------------------------------------------------------------

    async def create(self, name: str, agent: str, config: CampaignConfig) -> Campaign:
        now = utcnow()
        row = CampaignRow(id=str(uuid.uuid4()), name=name, agent=agent, state="draft",
                          config=config.model_dump(mode="json"), rows_total=0, rows_bad=0, import_errors=[],
                          created_at=now, updated_at=now)
        async with self.store.transaction() as s:
            s.add(row)
        return Campaign.from_row(row)

    async def import_csv(self, campaign_id: str, lines: Iterable[str], *, batch: int = 2000) -> ImportReport:
        """Add the rows of a CSV (streamed: parsed `batch` rows at a time in a worker thread). Raises
        `CsvHeaderError` (nothing imported) when the header is unusable. Errors name the file's lines; a
        second file's rows are stored after the first's (`line` is then the file line plus an offset)."""
        rows: Iterator[Recipient | RowError] = read_recipients(lines)
        async with self.store.sessions() as s:
            first_line = int((await s.execute(select(func.coalesce(func.max(RecipientRow.line), 0))
                                              .where(RecipientRow.campaign_id == campaign_id))).scalar_one())
        accepted = bad = 0
        errors: list[RowError] = []
        while True:
            chunk = await asyncio.to_thread(lambda: list(islice(rows, batch)))
            if not chunk:
                break
            values = []
            for item in chunk:
                if isinstance(item, RowError):
                    bad += 1
                    if len(errors) < MAX_KEPT_ERRORS:
                        errors.append(item)
                    continue
                values.append({"campaign_id": campaign_id, "line": item.line + first_line,
                               "number": item.number, "zone": item.zone, "variables": item.variables,
                               "meta": item.metadata, "state": "pending", "attempts": 0, "next_at": None})
            async with self.store.transaction() as s:
                if values:
                    await s.execute(insert(RecipientRow), values)
            accepted += len(values)
        async with self.store.transaction() as s:
            row = await self._lock(s, campaign_id)
            row.rows_total += accepted
            row.rows_bad += bad
            kept = list(row.import_errors or [])
            row.import_errors = (kept + [e.to_dict() for e in errors])[:MAX_KEPT_ERRORS]
            row.updated_at = utcnow()
        return ImportReport(accepted, bad, errors)

    async def get(self, campaign_id: str) -> Campaign:
        async with self.store.sessions() as s:
            row = await s.get(CampaignRow, campaign_id)
            if row is None:
                raise CampaignNotFound(campaign_id)
            counts, outcomes = await self._counts(s, campaign_id)
            return Campaign.from_row(row, counts, outcomes)

    async def list_campaigns(self, *, limit: int = 100) -> list[Campaign]:
        async with self.store.sessions() as s:
            rows = list((await s.execute(select(CampaignRow).order_by(CampaignRow.created_at.desc())
                                         .limit(limit))).scalars())
            out = []
            for row in rows:
                counts, outcomes = await self._counts(s, row.id)
                out.append(Campaign.from_row(row, counts, outcomes))
            return out

    async def command(self, campaign_id: str, command: str) -> Campaign:
        """`start`, `pause`, `resume` or `cancel`; CampaignStateError when the state does not allow it.
        Cancel finishes every waiting recipient as `canceled` (live calls are hung up by the runner)."""
        moves = MOVES[command]
        now = utcnow()
        async with self.store.transaction() as s:
            row = await self._lock(s, campaign_id)
            if row.state not in moves:
                allowed = " or ".join(sorted(moves))
                raise CampaignStateError(f"campaign {campaign_id} is {row.state}; {command} needs it {allowed}")
            row.state = moves[row.state]
            row.updated_at = now
            if row.state == "running" and row.started_at is None:
                row.started_at = now
            if command == "cancel":
                await s.execute(update(RecipientRow)
                                .where(RecipientRow.campaign_id == campaign_id, RecipientRow.state == "pending")
                                .values(state="done", outcome="canceled", note="campaign canceled"))
        return await self.get(campaign_id)

    async def active_ids(self) -> list[str]:
        """Campaigns the runner must look at: running, paused, or canceled with calls still to settle."""
        async with self.store.sessions() as s:
            q = select(CampaignRow.id).where(or_(CampaignRow.state.in_(("running", "paused")),
                                                 (CampaignRow.state == "canceled")
                                                 & CampaignRow.finished_at.is_(None)))
            return list((await s.execute(q.order_by(CampaignRow.created_at))).scalars())

    async def row(self, campaign_id: str) -> CampaignRow:
        async with self.store.sessions() as s:
            row = await s.get(CampaignRow, campaign_id)
            if row is None:
                raise CampaignNotFound(campaign_id)
            return row

    async def lease(self, campaign_id: str, owner: str, lease_s: float) -> bool:
        """Take or extend the runner lease on a campaign (one runner per campaign across processes)."""
        now = utcnow()
        async with self.store.transaction() as s:
            result = await s.execute(
                update(CampaignRow).where(CampaignRow.id == campaign_id,
                                          or_(CampaignRow.lease_owner == owner, CampaignRow.lease_until.is_(None),
                                              CampaignRow.lease_until < now))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s)))
            return db.rowcount(result) == 1

    async def release(self, owner: str) -> None:
        async with self.store.transaction() as s:
            await s.execute(update(CampaignRow).where(CampaignRow.lease_owner == owner)
                            .values(lease_owner=None, lease_until=None))

    async def finish_campaign(self, campaign_id: str, state: str) -> None:
        async with self.store.transaction() as s:
            row = await self._lock(s, campaign_id)
            if row.state in ("running", "canceled"):
                row.state = state
                row.finished_at = row.updated_at = utcnow()

    # --- recipients (the runner) ------------------------------------------------------------------

    async def calling(self, campaign_id: str) -> list[Due]:
        async with self.store.sessions() as s:
            rows = (await s.execute(select(RecipientRow).where(RecipientRow.campaign_id == campaign_id,
                                                               RecipientRow.state == "calling"))).scalars()
            return [_due(r) for r in rows]

    async def call_states(self, call_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Status and metadata of each of `call_ids` that exists (one query)."""
        if not call_ids:
            return {}
        async with self.store.sessions() as s:
            rows = await s.execute(select(CallRow.id, CallRow.status, CallRow.meta).where(CallRow.id.in_(call_ids)))
            return {cid: (status, dict(meta or {})) for cid, status, meta in rows}

    async def due(self, campaign_id: str, now: datetime, limit: int) -> list[Due]:
        """Pending recipients due by `now`, oldest due first, then file order."""
        q = (select(RecipientRow).where(RecipientRow.campaign_id == campaign_id, RecipientRow.state == "pending",
                                        or_(RecipientRow.next_at.is_(None), RecipientRow.next_at <= now))
             .order_by(RecipientRow.next_at.is_not(None), RecipientRow.next_at, RecipientRow.id).limit(limit))
        async with self.store.sessions() as s:
            return [_due(r) for r in (await s.execute(q)).scalars()]

    async def has_pending(self, campaign_id: str) -> bool:
        async with self.store.sessions() as s:
            found = (await s.execute(select(RecipientRow.id).where(
                RecipientRow.campaign_id == campaign_id,
                RecipientRow.state.in_(("pending", "calling"))).limit(1))).scalar_one_or_none()
            return found is not None

    async def defer(self, items: list[tuple[int, datetime, str]]) -> None:
        """Pending recipients (id, when, why) wait until `when` (one transaction for them all)."""
        if not items:
            return
        async with self.store.transaction() as s:
            for recipient_id, at, note in items:
                await s.execute(update(RecipientRow).where(RecipientRow.id == recipient_id,
                                                           RecipientRow.state == "pending")
                                .values(next_at=at, note=note))

    async def claim(self, campaign_id: str, recipient: Due, call_id: str, now: datetime) -> bool:
        """pending -> calling with a new attempt and its call id (compare-and-set on state and attempts)."""
        async with self.store.transaction() as s:
            result = await s.execute(
                update(RecipientRow).where(RecipientRow.id == recipient.id, RecipientRow.state == "pending",
                                           RecipientRow.attempts == recipient.attempts)
                .values(state="calling", attempts=recipient.attempts + 1, call_id=call_id, note=None))
            if db.rowcount(result) != 1:
                return False
            s.add(AttemptRow(campaign_id=campaign_id, recipient_id=recipient.id, attempt=recipient.attempts + 1,
                             call_id=call_id, started_at=now))
            return True

    async def finish(self, recipient_id: int, outcome: str, note: str, *, call_id: str | None = None,
                     now: datetime | None = None) -> None:
        """The recipient is done with `outcome` (its last attempt, if any, ended so)."""
        async with self.store.transaction() as s:
            await s.execute(update(RecipientRow).where(RecipientRow.id == recipient_id,
                                                       RecipientRow.state != "done")
                            .values(state="done", outcome=outcome, note=note))
            if call_id:
                await s.execute(update(AttemptRow).where(AttemptRow.call_id == call_id)
                                .values(outcome=outcome, ended_at=now or utcnow()))

    async def retry(self, recipient_id: int, call_id: str, outcome: str, at: datetime, note: str,
                    now: datetime) -> None:
        """calling -> pending, due again at `at`."""
        async with self.store.transaction() as s:
            await s.execute(update(RecipientRow).where(RecipientRow.id == recipient_id,
                                                       RecipientRow.state == "calling",
                                                       RecipientRow.call_id == call_id)
                            .values(state="pending", next_at=at, note=note, outcome=outcome))
            await s.execute(update(AttemptRow).where(AttemptRow.call_id == call_id)
                            .values(outcome=outcome, ended_at=now))

    async def started_since(self, campaign_id: str, since: datetime) -> int:
        async with self.store.sessions() as s:
            return int((await s.execute(select(func.count()).select_from(AttemptRow).where(
                AttemptRow.campaign_id == campaign_id, AttemptRow.started_at >= since))).scalar_one())

    async def attempts(self, campaign_id: str) -> list[dict[str, Any]]:
        """Every attempt, in order: recipient line, number, attempt, call id, outcome."""
        q = (select(AttemptRow, RecipientRow.line, RecipientRow.number)
             .join(RecipientRow, RecipientRow.id == AttemptRow.recipient_id)
             .where(AttemptRow.campaign_id == campaign_id).order_by(AttemptRow.id))
        async with self.store.sessions() as s:
            return [{"line": line, "number": number, "attempt": a.attempt, "call_id": a.call_id,
                     "outcome": a.outcome, "started_at": a.started_at.isoformat()}
                    for a, line, number in (await s.execute(q))]

    async def recipients(self, campaign_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        q = (select(RecipientRow).where(RecipientRow.campaign_id == campaign_id).order_by(RecipientRow.id)
             .limit(limit))
        async with self.store.sessions() as s:
            return [{"line": r.line, "number": r.number, "state": r.state, "outcome": r.outcome,
                     "attempts": r.attempts, "call_id": r.call_id, "note": r.note,
                     "next_at": r.next_at.isoformat() if r.next_at else None}
                    for r in (await s.execute(q)).scalars()]

    # --- do-not-call ------------------------------------------------------------------------------

    async def add_dnc(self, numbers: Iterable[str], reason: str | None = None) -> int:
        """Add numbers (E.164; ValueError names a bad one); returns how many were new."""
        clean = sorted({normalise(n) for n in numbers})
        added = 0
        async with self.store.transaction() as s:
            existing = set((await s.execute(select(DncRow.number).where(DncRow.number.in_(clean)))).scalars())
            for n in clean:
                if n not in existing:
                    s.add(DncRow(number=n, reason=reason, added_at=utcnow()))
                    added += 1
        return added

    async def remove_dnc(self, number: str) -> bool:
        async with self.store.transaction() as s:
            result = await s.execute(delete(DncRow).where(DncRow.number == normalise(number)))
            return db.rowcount(result) > 0

    async def list_dnc(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        async with self.store.sessions() as s:
            rows = (await s.execute(select(DncRow).order_by(DncRow.number).limit(limit))).scalars()
            return [{"number": r.number, "reason": r.reason, "added_at": r.added_at.isoformat()} for r in rows]

    async def is_dnc(self, number: str) -> bool:
        async with self.store.sessions() as s:
            return (await s.execute(select(DncRow.number).where(DncRow.number == number))).scalar_one_or_none() \
                is not None

    # --- helpers ------------------------------------------------------------------------------------

    async def _lock(self, s: Any, campaign_id: str) -> CampaignRow:
        row = (await s.execute(select(CampaignRow).where(CampaignRow.id == campaign_id).with_for_update())
               ).scalar_one_or_none()
        if row is None:
            raise CampaignNotFound(campaign_id)
        return row

    async def _counts(self, s: Any, campaign_id: str) -> tuple[dict[str, int], dict[str, int]]:
        rows = await s.execute(select(RecipientRow.state, RecipientRow.outcome, func.count())
                               .where(RecipientRow.campaign_id == campaign_id)
                               .group_by(RecipientRow.state, RecipientRow.outcome))
        counts: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        for state, outcome, n in rows:
            counts[state] = counts.get(state, 0) + int(n)
            if state == "done" and outcome:
                outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
        return counts, outcomes
