"""Database engines and Alembic migrations.

URLs: `sqlite+aiosqlite:///path.db` (default, a file in DATA_DIR) or `postgresql+asyncpg://…`. Plain
`sqlite:///` and `postgresql://` are accepted and given their async driver. libpq's
`options=-csearch_path=SCHEMA` is turned into asyncpg `server_settings`, so a schema can be chosen in the URL;
migrations run on a connection of that engine and therefore inside that schema.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, CursorResult, Result, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")
#: A pooled PostgreSQL connection idle this long is checked before use (see `ping_when_idle`).
PING_IDLE_S = 5.0


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched. Its result is a `CursorResult`; SQLAlchemy types `execute` as
    returning the general `Result`, which has no `rowcount`."""
    return cast(CursorResult[Any], result).rowcount


def normalise_url(url: str) -> tuple[str, dict[str, Any]]:
    """The async driver URL and extra `connect_args` for `url`."""
    u = make_url(url)
    connect_args: dict[str, Any] = {}
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    if u.drivername == "postgresql+asyncpg" and "options" in u.query:
        settings: dict[str, str] = {}
        for part in shlex.split(str(u.query["options"])):
            part = part.removeprefix("-c")
            if "=" in part:
                key, value = part.split("=", 1)
                settings[key.strip()] = value.strip()
        connect_args["server_settings"] = settings
        u = u.difference_update_query(["options"])
    if u.drivername == "sqlite+aiosqlite":
        connect_args["timeout"] = 30  # busy timeout against other processes (CLI export, migrations)
    return u.render_as_string(hide_password=False), connect_args


def create_engine(url: str, *, pool_size: int = 10, ping_idle_s: float = PING_IDLE_S) -> AsyncEngine:
    """An async engine. SQLite gets one pooled connection, WAL and `BEGIN IMMEDIATE` transactions, so
    writers queue instead of failing with 'database is locked'."""
    real, connect_args = normalise_url(url)
    if real.startswith("sqlite"):
        db = make_url(real).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(real, connect_args=connect_args, pool_size=1, max_overflow=0,
                                     pool_timeout=120)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # many calls write small transactions at once: a bigger pool, and waiting beats failing
    engine = create_async_engine(real, connect_args=connect_args, pool_size=pool_size,
                                 max_overflow=2 * pool_size, pool_timeout=120)
    ping_when_idle(engine, ping_idle_s)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Check a pooled connection before use only when it sat idle for `idle_s` or more.

    SQLAlchemy's `pool_pre_ping` checks every checkout, and on asyncpg a check is three round trips
    (BEGIN, `;`, ROLLBACK): a call's half-dozen transactions paid eighteen extra round trips, several of them
    before its 200 OK. A connection in steady use is proven by its last transaction; one that sat idle (a
    database restarted or a firewall dropped it meanwhile) is pinged, and a dead one is replaced before use
    (`DisconnectionError`: the pool connects anew). A connection that dies while in steady use fails the
    one transaction that meets it; the pool then drops it."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return  # fresh, or used moments ago
        record.info["pings"] = record.info.get("pings", 0) + 1
        try:
            dbapi_conn.ping()
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its check: {exc}") from exc


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(conn: Connection, revision: str) -> None:
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on `engine`'s database (and schema)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str | None:
    """The newest packaged revision."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def wait_for_schema(calls_store_url: str, timeout_s: float) -> None:
    """Wait until the database is migrated to the packaged head (the API migrates); RuntimeError after
    `timeout_s` naming both revisions."""
    engine = create_engine(calls_store_url)
    head = head_revision()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    current: str | None = None
    try:
        while True:
            try:
                current = await current_revision(engine)
            except Exception:  # noqa: BLE001 - not reachable / not created yet: keep waiting
                current = None
            if current == head:
                return
            if loop.time() >= deadline:
                raise RuntimeError(f"the database is at revision {current or 'none'}, this worker needs {head}: "
                                   "start `parley api` (it migrates) or run `parley db upgrade`")
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
