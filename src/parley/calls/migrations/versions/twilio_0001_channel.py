"""Calls: the channel a call ran on (sip, twilio, …) and the carrier's own call id (Twilio's CallSid).

Revision ID: twilio_0001
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "twilio_0001"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("channel", sa.String(16), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(64), nullable=True))
        batch.create_index("ix_calls_channel", ["channel"])
        batch.create_index("ix_calls_external_id", ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_external_id")
        batch.drop_index("ix_calls_channel")
        batch.drop_column("external_id")
        batch.drop_column("channel")
