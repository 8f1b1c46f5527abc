"""Table for trunks and dispatch rules: one row per item, its validated config as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from parley.calls.models import Base, UTCDateTime, utcnow


class TelephonyRow(Base):
    """A trunk (`kind="trunk"`) or a dispatch rule (`kind="rule"`), keyed by name."""

    __tablename__ = "telephony_config"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
