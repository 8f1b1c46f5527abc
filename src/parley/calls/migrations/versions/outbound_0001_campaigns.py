"""Campaigns, recipients, attempts and the do-not-call list.

Revision ID: outbound_0001
Revises: twilio_0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "outbound_0001"
down_revision = "twilio_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("rows_total", sa.Integer, nullable=False),
        sa.Column("rows_bad", sa.Integer, nullable=False),
        sa.Column("import_errors", sa.JSON, nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_campaigns_state", "campaigns", ["state"])
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(36), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(64)),
        sa.Column("variables", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", TS),
        sa.Column("call_id", sa.String(36)),
        sa.Column("note", sa.Text),
        sa.UniqueConstraint("campaign_id", "line", name="uq_campaign_recipients_line"),
    )
    op.create_index("ix_campaign_recipients_due", "campaign_recipients", ["campaign_id", "state", "next_at"])
    op.create_table(
        "campaign_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(36), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("recipient_id", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("call_id", sa.String(36), nullable=False, unique=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("ended_at", TS),
    )
    op.create_index("ix_campaign_attempts_started", "campaign_attempts", ["campaign_id", "started_at"])
    op.create_index("ix_campaign_attempts_recipient_id", "campaign_attempts", ["recipient_id"])
    op.create_table(
        "dnc_numbers",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("reason", sa.Text),
        sa.Column("added_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("dnc_numbers", "campaign_attempts", "campaign_recipients", "campaigns"):
        op.drop_table(table)
