"""`parley db upgrade | current`: the calls database schema (Alembic migrations)."""

from __future__ import annotations

import asyncio

import typer

from parley.cli.common import console, fail, settings
from parley.settings import mask_url

db_app = typer.Typer(help="The calls database (SQLite file in DATA_DIR, or DATABASE_URL).", no_args_is_help=True)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@db_app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration (the API and workers also do this on start)."""
    from parley.calls import db

    s = settings()
    url = s.effective_database_url

    async def run() -> tuple[str | None, str | None]:
        engine = db.create_engine(url)
        try:
            before = await db.current_revision(engine)
            await db.upgrade(engine)
            return before, await db.current_revision(engine)
        finally:
            await engine.dispose()

    try:
        before, after = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - one readable line, whatever the driver raised
        fail(f"cannot upgrade {mask_url(url)}: {_describe(exc)}")
    if before == after:
        console.print(f"database {mask_url(url)} is up to date (revision {after})", highlight=False)
    else:
        console.print(f"database {mask_url(url)} upgraded: {before or 'empty'} -> {after}", highlight=False)


@db_app.command("current")
def current() -> None:
    """Print the database's revision and the newest one this version ships."""
    from parley.calls import db

    s = settings()
    url = s.effective_database_url

    async def run() -> str | None:
        engine = db.create_engine(url)
        try:
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    try:
        rev = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - one readable line, whatever the driver raised
        fail(f"cannot read {mask_url(url)}: {_describe(exc)}")
    console.print(f"{mask_url(url)}: revision {rev or 'none (run parley db upgrade)'}; "
                  f"newest {db.head_revision()}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
