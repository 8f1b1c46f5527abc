"""Campaign tables in the calls database (migration outbound_0001): campaigns, their recipients, every
dial attempt, and the do-not-call list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.calls.models import Base, UTCDateTime, utcnow


class CampaignRow(Base):
    """A campaign: agent, schedule and limits (`config`), state, and the import's report."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    agent: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), index=True)  # draft|running|paused|canceled|completed
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_bad: Mapped[int] = mapped_column(Integer, default=0)
    import_errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecipientRow(Base):
    """One CSV row: `pending` (due at `next_at`), `calling` (call `call_id` is queued or live) or `done`."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (UniqueConstraint("campaign_id", "line", name="uq_campaign_recipients_line"),
                      Index("ix_campaign_recipients_due", "campaign_id", "state", "next_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(36), ForeignKey("campaigns.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(32))
    zone: Mapped[str | None] = mapped_column(String(64))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    call_id: Mapped[str | None] = mapped_column(String(36))
    note: Mapped[str | None] = mapped_column(Text)


class AttemptRow(Base):
    """One dial attempt of a recipient: the call it made and how it ended."""

    __tablename__ = "campaign_attempts"
    __table_args__ = (Index("ix_campaign_attempts_started", "campaign_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(36), ForeignKey("campaigns.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(Integer, index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    call_id: Mapped[str] = mapped_column(String(36), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DncRow(Base):
    """A number never to be called by a campaign."""

    __tablename__ = "dnc_numbers"

    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
