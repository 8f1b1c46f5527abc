"""The transport a call ran over: `calls.channel` (sip, webrtc); existing calls are SIP calls.

Revision ID: webrtc_0001
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "webrtc_0001"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("channel", sa.String(16), nullable=False, server_default="sip"))
        batch.create_index("ix_calls_channel", ["channel"])


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_channel")
        batch.drop_column("channel")
