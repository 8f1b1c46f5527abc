"""Calls: the carrier's own call id (Twilio's CallSid); the channel column comes from webrtc_0001.

Revision ID: twilio_0001
Revises: webrtc_0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "twilio_0001"
down_revision = "webrtc_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("external_id", sa.String(64), nullable=True))
        batch.create_index("ix_calls_external_id", ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_external_id")
        batch.drop_column("external_id")
