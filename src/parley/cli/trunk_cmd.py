"""`parley trunk ensure | list | status | delete` — trunks and dispatch rules."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from parley.cli.common import console, fail, settings

trunk_app = typer.Typer(help="SIP trunks and dispatch rules (stored in the calls database).",
                        no_args_is_help=True)


async def _with_store(work: Any) -> Any:
    from parley.calls.store import Store
    from parley.telephony.store import TelephonyStore

    s = settings()
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    store = Store.from_url(s.effective_database_url)
    try:
        await store.upgrade()
        return await work(store, TelephonyStore(store))
    finally:
        await store.close()


def _run(work: Any) -> Any:
    try:
        return asyncio.run(_with_store(work))
    except OSError as exc:
        fail(f"cannot open the database ({settings().masked()['database_url']}): {exc}")


@trunk_app.command("ensure")
def ensure(
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Trunks YAML (trunks:, dispatch_rules:)."),  # noqa: UP007
) -> None:
    """Create or update trunks and rules from a YAML file, or a `default` trunk from SIP_TRUNK_* (idempotent)."""
    from parley.agents.errors import ConfigError
    from parley.telephony.config_file import config_from_settings, load_config_file

    try:
        config = load_config_file(file) if file else config_from_settings(settings())
    except ConfigError as exc:
        fail(str(exc))
    if not config.trunks and not config.dispatch_rules:
        fail("nothing to ensure: pass --file trunks.yaml or set SIP_TRUNK_HOST (and USERNAME/PASSWORD/NUMBER)")

    async def work(_store: Any, tel: Any) -> dict[str, list[str]]:
        return await tel.ensure(config)

    report = _run(work)
    for name in report["changed"]:
        console.print(f"[green]ensured[/] {name}", highlight=False)
    for name in report["unchanged"]:
        console.print(f"unchanged {name}", highlight=False)


@trunk_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List trunks (passwords masked) and dispatch rules."""

    async def work(_store: Any, tel: Any) -> Any:
        return await tel.config()

    config = _run(work)
    if as_json:
        typer.echo(json.dumps({"trunks": [t.public_dict() for t in config.trunks],
                               "dispatch_rules": [r.model_dump(mode="json") for r in config.dispatch_rules]},
                              indent=2))
        return
    table = Table("trunk", "inbound", "outbound", title="Trunks")
    for t in config.trunks:
        inbound = "-"
        if t.inbound:
            who = ", ".join(t.inbound.allowed_addresses) or ""
            who += (" + " if who else "") + (f"digest user {t.inbound.username}" if t.inbound.username else "")
            inbound = f"{who}; numbers: {', '.join(t.inbound.numbers) or 'any'}"
        outbound = "-"
        if t.outbound:
            o = t.outbound
            outbound = (f"{o.host}:{o.port}/{o.transport} user={o.username or '-'} caller_id={o.caller_id or '-'} "
                        f"from={o.from_user}{' register' if o.registration else ''}")
        table.add_row(t.name, inbound, outbound)
    console.print(table)
    rules = Table("rule", "numbers / prefixes", "trunks", "agent", title="Dispatch rules")
    for r in config.dispatch_rules:
        rules.add_row(r.name, ", ".join(r.numbers + [p + "…" for p in r.prefixes]) or "any",
                      ", ".join(r.trunks) or "any", r.agent)
    console.print(rules)


@trunk_app.command("status")
def status(
    name: Optional[str] = typer.Argument(None, help="One trunk (default: all)."),  # noqa: UP007
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Reachability (OPTIONS round trip), active calls and the last error in words, per trunk."""
    from parley.sip.endpoint import SipEndpoint
    from parley.telephony.admin import trunk_status

    async def work(store: Any, tel: Any) -> list[dict[str, Any]]:
        trunks = await tel.trunks()
        if name:
            trunks = [t for t in trunks if t.name == name]
            if not trunks:
                return [{"error": f"unknown trunk {name!r}"}]
        if not trunks:
            return []
        endpoint = SipEndpoint(host="0.0.0.0", port=0, transports=("udp", "tcp"))
        await endpoint.start()
        try:
            return list(await asyncio.gather(*(trunk_status(store, t, endpoint) for t in trunks)))
        finally:
            await endpoint.close()

    rows = _run(work)
    if rows and "error" in rows[0]:
        fail(rows[0]["error"])
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("no trunks configured: calls are accepted from loopback only (see `parley trunk ensure`)")
        return
    for row in rows:
        mark = "[green]ok[/]" if row["reachable"] else ("[red]unreachable[/]" if row["reachable"] is False else "-")
        console.print(f"[bold]{row['name']}[/]: {mark}  active calls: {row['active_calls']}", highlight=False)
        if row["options"]:
            console.print(f"  {row['options']}", highlight=False)
        console.print(f"  registration: {'on' if row['registration'] else 'off'}", highlight=False)
        console.print(f"  last error: {row['last_error'] or 'none'}", highlight=False)


@trunk_app.command("delete")
def delete(
    name: str = typer.Argument(..., help="Trunk (or rule, with --rule) name."),
    rule: bool = typer.Option(False, "--rule", help="Delete a dispatch rule instead of a trunk."),
) -> None:
    """Delete a trunk or a dispatch rule."""

    async def work(_store: Any, tel: Any) -> bool:
        return await tel.delete("rule" if rule else "trunk", name)

    if not _run(work):
        fail(f"no {'dispatch rule' if rule else 'trunk'} named {name!r}")
    console.print(f"deleted {'rule' if rule else 'trunk'} {name}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(trunk_app, name="trunk")
