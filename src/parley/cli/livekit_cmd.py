"""`parley livekit join ROOM --agent NAME` and `parley livekit sip ensure | list | status | delete`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import typer

from parley.cli.common import console, fail, settings

if TYPE_CHECKING:
    from livekit import api as lkapi

    from parley.telephony.livekit.config import LiveKitConfig
    from parley.telephony.trunks import TelephonyConfig

T = TypeVar("T")

livekit_app = typer.Typer(help="Parley agents in LiveKit rooms; LiveKit SIP trunks managed from Parley's.",
                          no_args_is_help=True)
sip_app = typer.Typer(help="Push Parley's trunks and dispatch rules to LiveKit SIP (idempotent).",
                      no_args_is_help=True)
livekit_app.add_typer(sip_app, name="sip")

FILE_OPTION = typer.Option(None, "--file", "-f", help="Trunks YAML (default: the trunks in the calls database).")


def _config() -> LiveKitConfig:
    from parley.telephony.livekit.config import LiveKitConfig, LiveKitConfigError

    try:
        return LiveKitConfig.from_settings(settings())
    except LiveKitConfigError as exc:
        fail(str(exc))


def _with_livekit(work: Callable[[lkapi.LiveKitAPI], Awaitable[T]]) -> T:
    """Run `work` with a LiveKit API client; any LiveKit failure ends the command with one line."""
    from parley.telephony.livekit.doctor import explain

    config = _config()

    async def run() -> T:
        client = config.api()
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except Exception as exc:
        fail(explain(exc, config))


def _parley_config(file: Path | None) -> TelephonyConfig:
    from parley.agents.errors import ConfigError
    from parley.calls.store import Store
    from parley.telephony.config_file import load_config_file
    from parley.telephony.store import TelephonyStore

    if file is not None:
        try:
            return load_config_file(file)
        except ConfigError as exc:
            fail(str(exc))
    s = settings()

    async def read() -> TelephonyConfig:
        Path(s.data_dir).mkdir(parents=True, exist_ok=True)
        store = Store.from_url(s.effective_database_url)
        try:
            await store.upgrade()
            return await TelephonyStore(store).config()
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except OSError as exc:
        fail(f"cannot open the database ({s.masked()['database_url']}): {exc}")


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"[yellow]note[/] {note}", highlight=False, soft_wrap=True)


@sip_app.command("ensure")
def ensure(file: Optional[Path] = FILE_OPTION,  # noqa: UP007
           prune: bool = typer.Option(False, "--prune", help="Also delete Parley-made objects Parley no longer has.")
           ) -> None:
    """Create or update LiveKit inbound/outbound trunks and dispatch rules from Parley's; says each change."""
    from parley.telephony.livekit import sip_sync

    want = sip_sync.desired(_parley_config(file))
    if not want.items:
        fail("nothing to push: no trunks or dispatch rules (add them with `parley trunk ensure`, or pass --file)")

    async def work(client: lkapi.LiveKitAPI) -> list[sip_sync.Change]:
        have, _ = await sip_sync.read(client)
        changes = sip_sync.plan(want, have, prune=prune)
        await sip_sync.apply(client, [c for c in changes if c.action != "conflict"])
        return changes

    changes = _with_livekit(work)
    _print_notes(want.notes)
    verbs = {"create": "[green]created[/]", "update": "[green]updated[/]", "delete": "[green]deleted[/]",
             "unchanged": "unchanged", "stale": "[yellow]stale[/]", "conflict": "[red]conflict[/]"}
    for ch in changes:
        detail = "" if ch.action in ("unchanged", "create", "delete") else f" — {ch.describe()}"
        console.print(f"{verbs[ch.action]} {ch.kind} {ch.name}{detail}", highlight=False, soft_wrap=True)
    if any(c.action == "conflict" for c in changes):
        raise typer.Exit(1)


@sip_app.command("status")
def status(file: Optional[Path] = FILE_OPTION) -> None:  # noqa: UP007
    """Compare LiveKit with Parley's trunks and rules; every difference in words (exit 1 on drift)."""
    from parley.telephony.livekit import sip_sync

    want = sip_sync.desired(_parley_config(file))

    async def work(client: lkapi.LiveKitAPI) -> list[sip_sync.Change]:
        have, _ = await sip_sync.read(client)
        return sip_sync.plan(want, have)

    changes = _with_livekit(work)
    _print_notes(want.notes)
    drift = [c for c in changes if c.action != "unchanged"]
    for ch in changes:
        style = "green" if ch.action == "unchanged" else "red"
        console.print(f"[{style}]{ch.describe()}[/]", highlight=False, soft_wrap=True)
    if drift:
        console.print(f"{len(drift)} difference(s): `parley livekit sip ensure` fixes them", highlight=False)
        raise typer.Exit(1)
    console.print("LiveKit SIP is in sync with Parley" if changes else "nothing to compare", highlight=False)


@sip_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List LiveKit's inbound/outbound trunks and dispatch rules (passwords masked), Parley's marked."""
    from parley.telephony.livekit import sip_sync

    async def work(client: lkapi.LiveKitAPI) -> list[sip_sync.Item]:
        return (await sip_sync.read(client))[0]

    items = _with_livekit(work)
    rows = [{"kind": i.kind, "name": i.name, "id": i.id, "managed_by_parley": i.managed,
             **{k: ("********" if k in sip_sync.SECRET_FIELDS and v else v) for k, v in i.fields.items()
                if k != "metadata"}} for i in items]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("LiveKit has no SIP trunks or dispatch rules", highlight=False)
    for row in rows:
        mark = "parley" if row.pop("managed_by_parley") else "other"
        head = f"[bold]{row.pop('kind')} {row.pop('name')}[/] ({row.pop('id')}, {mark})"
        console.print(head + ": " + ", ".join(f"{k}={v}" for k, v in row.items() if v not in ("", [], {})),
                      highlight=False, soft_wrap=True)


@sip_app.command("delete")
def delete(names: Optional[list[str]] = typer.Argument(None, help="Trunk or rule names."),  # noqa: UP007
           all_: bool = typer.Option(False, "--all", help="Delete every Parley-made trunk and rule.")) -> None:
    """Delete Parley-made trunks and rules from LiveKit (never objects Parley did not make)."""
    from parley.telephony.livekit import sip_sync

    if not names and not all_:
        fail("say which: trunk/rule names, or --all for every Parley-made one")

    async def work(client: lkapi.LiveKitAPI) -> list[sip_sync.Change]:
        return await sip_sync.delete(client, set(names or []) or None)

    done = _with_livekit(work)
    if names and not done:
        fail(f"LiveKit has no Parley-made trunk or rule named {', '.join(names)}")
    for ch in done:
        console.print(f"deleted {ch.kind} {ch.name}", highlight=False)
    if not done:
        console.print("nothing to delete", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(livekit_app, name="livekit")


@livekit_app.command("join")
def join(
    room: str = typer.Argument(..., help="The LiveKit room to join."),
    agent: str = typer.Option(..., "--agent", "-a", help="The agent that talks in the room."),
    caller: Optional[str] = typer.Option(None, "--caller", help="Talk to this participant identity (default: "  # noqa: UP007
                                         "the first SIP participant, else the first non-agent one)."),
    wait_s: float = typer.Option(60.0, "--wait", help="Seconds to wait for someone to talk to.", min=1),
) -> None:
    """Put an agent into ROOM now (explicit dispatch) and stay until the conversation ends."""
    import re

    from parley.agents import AgentError, AgentRegistry
    from parley.calls import CallsService
    from parley.telephony.livekit.dispatch import Participant
    from parley.telephony.livekit.sessions import RoomSessions, SessionRefused

    if not re.fullmatch(r"[^\s/]{1,128}", room):
        fail(f"room name {room!r} is not valid: 1-128 characters, no spaces or slashes")
    config = _config()
    s = settings()
    try:
        agents = AgentRegistry.load(s.agents_dir, s.prompts_dir)
    except AgentError as exc:
        fail("agents are invalid: " + "; ".join(exc.problems))
    if agent not in agents:
        fail(f"unknown agent {agent!r}; agents: {', '.join(a.key for a in agents)}")

    async def run() -> tuple[str, Any]:
        Path(s.data_dir).mkdir(parents=True, exist_ok=True)
        calls = await CallsService.open(s, agents=agents)
        sessions = RoomSessions(s, agents, calls, config, caller_timeout_s=wait_s)
        try:
            who = Participant(caller) if caller else None
            session = await sessions.start(room, caller=who, agent=agent, source="cli")
            console.print(f"call {session.call_id}: agent {session.agent} joining room {room}", highlight=False)
            if session.task is not None:
                await session.task
            return session.call_id, await calls.get_call(session.call_id)
        finally:
            await sessions.close()
            await calls.close()

    try:
        call_id, record = asyncio.run(run())
    except SessionRefused as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")
    status = record.status if record else "unknown"
    reason = (record.end_reason if record else None) or ""
    if status in ("failed", "no_answer", "canceled"):
        fail(f"call {call_id} {status}: {reason}")
    console.print(f"call {call_id} {status}: {reason}", highlight=False)
