"""Alembic environment: runs on the connection handed over in `config.attributes["connection"]`
(see `parley.calls.db.upgrade`), so it works with the async engines and inside a chosen schema."""

from __future__ import annotations

from alembic import context

from parley.calls.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `parley db upgrade` (parley.calls.db.upgrade), not plain alembic")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
