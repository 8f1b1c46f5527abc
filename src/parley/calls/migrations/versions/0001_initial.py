"""Calls, transcript entries, call events, webhook outbox and queue jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("from_number", sa.String(64)),
        sa.Column("to_number", sa.String(64)),
        sa.Column("caller_name", sa.String(256)),
        sa.Column("trunk", sa.String(64)),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("llm_prompt", sa.Text),
        sa.Column("greeting", sa.Text),
        sa.Column("webhook_url", sa.Text),
        sa.Column("schedule_at", TS),
        sa.Column("max_retries", sa.Integer),
        sa.Column("retry_backoff_s", sa.Float),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("sip_call_id", sa.String(256)),
        sa.Column("recording_path", sa.Text),
        sa.Column("end_reason", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("dialed_at", TS),
        sa.Column("answered_at", TS),
        sa.Column("ended_at", TS),
    )
    op.create_index("ix_calls_id", "calls", ["id"], unique=True)
    op.create_index("ix_calls_status", "calls", ["status"])
    op.create_index("ix_calls_agent", "calls", ["agent"])
    op.create_index("ix_calls_sip_call_id", "calls", ["sip_call_id"])
    op.create_index("ix_calls_created_at", "calls", ["created_at"])

    op.create_table(
        "transcript_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index("ix_transcript_entries_call_id", "transcript_entries", ["call_id"])

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_call_events_call_id", "call_events", ["call_id"])

    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("locked_until", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
    )
    op.create_index("ix_webhook_outbox_call_id", "webhook_outbox", ["call_id"])
    op.create_index("ix_webhook_outbox_pending", "webhook_outbox", ["status", "next_attempt_at"])

    op.create_table(
        "queue_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", TS),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.UniqueConstraint("call_id", "attempt", name="uq_queue_jobs_call_attempt"),
    )
    op.create_index("ix_queue_jobs_ready", "queue_jobs", ["state", "due_at"])


def downgrade() -> None:
    for table in ("queue_jobs", "webhook_outbox", "call_events", "transcript_entries", "calls"):
        op.drop_table(table)
