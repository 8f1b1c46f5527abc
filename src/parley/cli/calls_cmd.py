"""`parley calls list | show ID | export --since … --format jsonl|csv`."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from parley.cli.common import console, err_console, fail, settings

if TYPE_CHECKING:
    from parley.calls.store import Store

calls_app = typer.Typer(help="Call records: list, show, export.", no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, option: str) -> datetime:
    """ISO date/time (UTC when no zone) or a relative age like `30m`, `24h`, `7d`, `2w`."""
    text = value.strip()
    m = _RELATIVE.match(text)
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {value!r}: use an ISO date/time (2026-11-24, 2026-11-24T08:00) or an age (24h, 7d)")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _open_store() -> Store:
    from parley.calls.store import Store

    return Store.from_url(settings().effective_database_url)


def _run(coro: Any) -> Any:
    from parley.settings import mask_url

    try:
        return asyncio.run(coro)
    except Exception as exc:  # noqa: BLE001 - one readable line, whatever the driver raised
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(f"calls database {mask_url(settings().effective_database_url)}: {type(exc).__name__}"
             + (f": {first}" if first else ""))


@calls_app.command("list")
def list_calls(
    status: str | None = typer.Option(None, "--status", help="queued, dialing, … completed, failed …"),
    agent: str | None = typer.Option(None, "--agent"),
    direction: str | None = typer.Option(None, "--direction", help="inbound or outbound"),
    since: str | None = typer.Option(None, "--since", help="ISO time or age (24h, 7d)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """The newest calls."""
    from parley.calls.states import parse_status

    if status:
        try:
            parse_status(status)
        except ValueError as exc:
            fail(f"--status: {exc}")
    if direction and direction not in ("inbound", "outbound"):
        fail(f"--direction {direction!r}: use inbound or outbound")
    since_dt = parse_when(since, "--since") if since else None

    async def run() -> list[Any]:
        store = _open_store()
        try:
            await store.upgrade()
            calls, _ = await store.list_calls(status=status, agent=agent, direction=direction, since=since_dt,
                                              limit=limit)
            return calls
        finally:
            await store.close()

    calls = _run(run())
    if as_json:
        for c in calls:
            typer.echo(json.dumps(c.to_dict(), ensure_ascii=False))
        return
    table = Table("id", "created (UTC)", "dir", "status", "agent", "to", "from", "attempt", "duration", "end reason")
    for c in calls:
        table.add_row(c.id, c.created_at.strftime("%Y-%m-%d %H:%M:%S"), c.direction[:3], c.status, c.agent,
                      c.to_number or "", c.from_number or "", str(c.attempt),
                      f"{c.duration_s:.0f}s" if c.duration_s is not None else "", c.end_reason or "")
    console.print(table)
    if not calls:
        console.print("no calls match", style="dim")


@calls_app.command("show")
def show(call_id: str = typer.Argument(..., help="The call id.")) -> None:
    """One call with timeline and transcript, as JSON."""

    async def run() -> Any:
        store = _open_store()
        try:
            await store.upgrade()
            return await store.get_detail(call_id)
        finally:
            await store.close()

    detail = _run(run())
    if detail is None:
        fail(f"no call with id {call_id!r}")
    typer.echo(json.dumps(detail.to_dict(), ensure_ascii=False, indent=2))


@calls_app.command("export")
def export(
    since: str = typer.Option(..., "--since", help="ISO date/time or age (24h, 7d)."),
    until: str | None = typer.Option(None, "--until", help="ISO date/time or age; default now."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or csv."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (default calls-<since>.<format>); '-' = stdout."),
    transcripts: bool = typer.Option(False, "--transcripts", help="jsonl: include each call's transcript."),
) -> None:
    """Export calls created since a time, oldest first, with a progress bar."""
    from parley.calls.export import FORMATS, export_calls

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    since_dt = parse_when(since, "--since")
    until_dt = parse_when(until, "--until") if until else None
    if until_dt and until_dt <= since_dt:
        fail("--until must be later than --since")
    to_stdout = str(output) == "-"
    path = output or Path(f"calls-{since_dt.strftime('%Y%m%dT%H%M%S')}.{fmt}")
    if not to_stdout and path.parent and not path.parent.is_dir():
        fail(f"--output {path}: folder {path.parent} does not exist")

    async def run() -> int:
        store = _open_store()
        try:
            await store.upgrade()
            total = await store.count_calls(since=since_dt, until=until_dt)
            progress = Progress(TextColumn("exporting calls"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=err_console, transient=to_stdout)
            with progress:
                task = progress.add_task("export", total=total)
                if to_stdout:
                    return await export_calls(store, sys.stdout, fmt, since=since_dt, until=until_dt,
                                              with_transcripts=transcripts,
                                              progress=lambda n: progress.advance(task, n))
                tmp = path.with_name(path.name + ".part")
                with tmp.open("w", encoding="utf-8", newline="") as out:
                    n = await export_calls(store, out, fmt, since=since_dt, until=until_dt,
                                           with_transcripts=transcripts,
                                           progress=lambda k: progress.advance(task, k))
                tmp.replace(path)
                return n
        finally:
            await store.close()

    n = _run(run())
    if not to_stdout:
        err_console.print(f"wrote {n} call(s) to {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(calls_app, name="calls")
