"""`parley campaigns create --csv FILE --agent NAME [--start-date D] [--end-date D] … | list |
show ID [--json] [--watch] | pause | resume | cancel`, and `parley campaigns dnc add|list|remove`. Works on
the calls database directly; a running `parley up` dials what is started here."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from parley.cli.common import console, err_console, fail, settings

if TYPE_CHECKING:
    from parley.campaigns.store import Campaign, CampaignStore

campaigns_app = typer.Typer(help="Outbound campaigns: a CSV of recipients dialed by an agent.",
                            no_args_is_help=True)
dnc_app = typer.Typer(help="The do-not-call list (checked at dial time).", no_args_is_help=True)
#: Import errors printed by `create` (the campaign keeps up to 1,000; `show --json` lists them).
SHOWN_ERRORS = 20


def _run(work: Any) -> Any:
    """Run `work(store)` on the calls database; one readable line on a database failure."""
    from parley.calls.store import Store
    from parley.campaigns.store import CampaignNotFound, CampaignStateError, CampaignStore
    from parley.settings import mask_url

    async def go() -> Any:
        store = Store.from_url(settings().effective_database_url)
        try:
            await store.upgrade()
            return await work(CampaignStore(store))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (CampaignNotFound, CampaignStateError) as exc:
        fail(str(exc))
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - one readable line, whatever the driver raised
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(f"calls database {mask_url(settings().effective_database_url)}: {type(exc).__name__}"
             + (f": {first}" if first else ""))


def _lines(path: Path, progress: Progress, task: Any) -> Iterator[str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line in f:
            progress.advance(task, len(line.encode("utf-8")))
            yield line


def _date_option(option: str, value: str | None) -> date | None:
    """`value` as a date (YYYY-MM-DD), or one readable line naming `option` and exit 1."""
    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            raise ValueError
        return date.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option}: {value!r} is not a date like 2026-12-31 (YYYY-MM-DD)")


@campaigns_app.command("create")
def create(
    csv_file: Path = typer.Option(..., "--csv", help="CSV with a header row and a `number` column (E.164)."),
    agent: str | None = typer.Option(None, "--agent", help="Agent key or name (default DEFAULT_AGENT)."),
    name: str | None = typer.Option(None, "--name", help="Campaign name (default the file name)."),
    max_concurrent: int = typer.Option(4, "--max-concurrent", min=1, max=1000, help="Calls at once."),
    calls_per_minute: float | None = typer.Option(None, "--calls-per-minute", min=1, help="New calls per minute."),
    window: str | None = typer.Option(None, "--window", help="Local calling hours HH:MM-HH:MM."),
    days: str | None = typer.Option(None, "--days", help="Days of week, e.g. mon-fri."),
    start_date: str | None = typer.Option(None, "--start-date",
                                          help="First day to call, YYYY-MM-DD (recipient's local date)."),
    end_date: str | None = typer.Option(None, "--end-date",
                                        help="Last day to call, YYYY-MM-DD (recipient's local date)."),
    timezone: str = typer.Option("UTC", "--timezone", help="Zone for numbers whose country has several."),
    from_number: str | None = typer.Option(None, "--from", help="Caller ID (E.164)."),
    retry: str | None = typer.Option(None, "--retry", help='JSON, e.g. {"busy": {"max_attempts": 3}}.'),
    start: bool = typer.Option(False, "--start", help="Start dialing at once (else it waits as a draft)."),
) -> None:
    """Create a campaign from a CSV file (streamed: any size) and report rows refused, by line."""
    from pydantic import ValidationError

    from parley.agents import AgentError, AgentRegistry
    from parley.campaigns.config import CampaignConfig
    from parley.campaigns.csv_import import CsvHeaderError

    if not csv_file.is_file():
        fail(f"--csv {csv_file}: no such file")
    s = settings()
    try:
        registry = AgentRegistry.load(s.agents_dir, s.prompts_dir)
        agent_key = registry.get(agent or s.default_agent).key
    except AgentError as exc:
        fail("agents are invalid: " + "; ".join(exc.problems))
    except KeyError as exc:
        fail(f"--agent: {exc.args[0]}")
    try:
        retry_map = json.loads(retry) if retry else None
    except json.JSONDecodeError as exc:
        fail(f"--retry: not JSON ({exc.msg})")
    first_day = _date_option("--start-date", start_date)
    last_day = _date_option("--end-date", end_date)
    if first_day and last_day and last_day < first_day:
        fail(f"--end-date: {last_day} is before --start-date {first_day}")
    try:
        config = CampaignConfig(window=window, days=days, timezone=timezone, max_concurrent=max_concurrent,
                                calls_per_minute=calls_per_minute, from_number=from_number, retry=retry_map,
                                start_date=first_day, end_date=last_day)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "options"
        option = {"from_number": "from"}.get(field, field).replace("_", "-")
        fail(f"--{option}: {first['msg'].removeprefix('Value error, ')}")

    async def work(store: CampaignStore) -> tuple[Campaign, Any]:
        campaign = await store.create(name or csv_file.stem, agent_key, config)
        progress = Progress(TextColumn("importing"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeElapsedColumn(), console=err_console, transient=True)
        try:
            with progress:  # transient: gone when done, so a refused file leaves one error line
                task = progress.add_task("import", total=csv_file.stat().st_size)
                report = await store.import_csv(campaign.id, _lines(csv_file, progress, task))
        except CsvHeaderError as exc:
            await store.command(campaign.id, "cancel")
            fail(f"--csv {csv_file}: {exc}")
        if start:
            await store.command(campaign.id, "start")
        return await store.get(campaign.id), report

    t0 = time.perf_counter()
    campaign, report = _run(work)
    for e in report.errors[:SHOWN_ERRORS]:
        err_console.print(f"{csv_file}:{e.line}: {e.message}", highlight=False, soft_wrap=True)
    if report.bad > SHOWN_ERRORS:
        err_console.print(f"… and {report.bad - SHOWN_ERRORS} more (parley campaigns show {campaign.id} --json)")
    console.print(f"campaign {campaign.id}: {report.accepted} recipient(s) accepted, {report.bad} refused "
                  f"in {time.perf_counter() - t0:.1f} s; {campaign.state}", highlight=False)
    typer.echo(campaign.id)


@campaigns_app.command("list")
def list_campaigns(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")) -> None:
    """Campaigns, newest first, with progress and outcomes."""

    async def work(store: CampaignStore) -> list[Campaign]:
        return await store.list_campaigns()

    campaigns = _run(work)
    if as_json:
        for c in campaigns:
            typer.echo(json.dumps(c.to_dict(errors=False)))
        return
    table = Table("id", "name", "agent", "state", "total", "queued", "in progress", "done", "outcomes")
    for c in campaigns:
        d = c.to_dict(errors=False)["counts"]
        table.add_row(c.id, c.name, c.agent, c.state, str(d["total"]), str(d["queued"]), str(d["in_progress"]),
                      str(d["completed"]), ", ".join(f"{k} {v}" for k, v in sorted(c.outcomes.items())))
    console.print(table)
    if not campaigns:
        console.print("no campaigns yet: parley campaigns create --csv FILE --agent NAME", style="dim")


@campaigns_app.command("show")
def show(
    campaign_id: str = typer.Argument(..., help="The campaign id."),
    as_json: bool = typer.Option(False, "--json", help="Everything as JSON (with import errors)."),
    watch: bool = typer.Option(False, "--watch", help="A live progress bar until the campaign ends."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between updates with --watch."),
) -> None:
    """One campaign: state, progress bar, counts by outcome."""

    async def get(store: CampaignStore) -> Campaign:
        return await store.get(campaign_id)

    campaign = _run(get)
    if as_json:
        typer.echo(json.dumps(campaign.to_dict(), indent=2))
        return
    console.print(f"campaign {campaign.id} · {campaign.name} · agent {campaign.agent} · {campaign.state}",
                  highlight=False)
    total = max(1, campaign.rows_total)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console)

    def detail(c: Campaign) -> str:
        d = c.to_dict(errors=False)["counts"]
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(c.outcomes.items()))
        return f"queued {d['queued']} · in progress {d['in_progress']} · {outcomes or 'no outcomes yet'}"

    with progress:
        task = progress.add_task(campaign.state, total=total, completed=campaign.counts.get("done", 0),
                                 detail=detail(campaign))
        while watch and campaign.state in ("running", "paused", "draft"):
            time.sleep(interval)
            campaign = _run(get)
            progress.update(task, description=campaign.state, completed=campaign.counts.get("done", 0),
                            detail=detail(campaign))
    if campaign.rows_bad:
        console.print(f"{campaign.rows_bad} CSV row(s) were refused (see --json: import_errors)", style="dim")


def _command(command: str) -> None:
    def run(campaign_id: str = typer.Argument(..., help="The campaign id.")) -> None:
        async def work(store: CampaignStore) -> Campaign:
            return await store.command(campaign_id, command)

        campaign = _run(work)
        console.print(f"campaign {campaign.id} is {campaign.state}", highlight=False)

    run.__doc__ = {"start": "Start dialing a draft campaign.", "pause": "Stop starting new calls (live ones "
                   "finish).", "resume": "Start dialing again.", "cancel": "Stop for good: waiting recipients "
                   "end canceled, live calls are hung up."}[command]
    campaigns_app.command(command)(run)


for _name in ("start", "pause", "resume", "cancel"):
    _command(_name)


@dnc_app.command("add")
def dnc_add(numbers: list[str] = typer.Argument(..., help="E.164 numbers."),
            reason: str | None = typer.Option(None, "--reason")) -> None:
    """Add numbers to the do-not-call list."""
    from parley.campaigns.numbers import NumberError

    async def work(store: CampaignStore) -> int:
        try:
            return await store.add_dnc(numbers, reason)
        except NumberError as exc:
            fail(str(exc))

    console.print(f"{_run(work)} number(s) added to the do-not-call list")


@dnc_app.command("list")
def dnc_list() -> None:
    """The do-not-call list."""

    async def work(store: CampaignStore) -> list[dict[str, Any]]:
        return await store.list_dnc(limit=100_000)

    for row in _run(work):
        typer.echo(f"{row['number']}\t{row['reason'] or ''}")


@dnc_app.command("remove")
def dnc_remove(number: str = typer.Argument(...)) -> None:
    """Remove a number from the do-not-call list."""
    from parley.campaigns.numbers import NumberError

    async def work(store: CampaignStore) -> bool:
        try:
            return await store.remove_dnc(number)
        except NumberError as exc:
            fail(str(exc))

    if not _run(work):
        fail(f"{number} is not on the do-not-call list")
    console.print(f"{number} removed from the do-not-call list")


campaigns_app.add_typer(dnc_app, name="dnc")


def register(app: typer.Typer) -> None:
    app.add_typer(campaigns_app, name="campaigns")
