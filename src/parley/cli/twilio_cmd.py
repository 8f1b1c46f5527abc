"""`parley twilio numbers list | numbers connect NUMBER --mode stream|sip | trunk ensure | status`.

Everything a user would otherwise click in Twilio's console: the account comes from TWILIO_ACCOUNT_SID /
TWILIO_AUTH_TOKEN, Parley's public addresses from TWILIO_PUBLIC_URL (stream mode) and SIP_PUBLIC_HOST /
SIP_PORT (SIP mode). Each command prints what it changed, or that nothing needed changing.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table

from parley.cli.common import console, fail, settings

twilio_app = typer.Typer(help="Twilio numbers and the Elastic SIP trunk (Media Streams or SIP).",
                         no_args_is_help=True)
numbers_app = typer.Typer(help="The account's phone numbers.", no_args_is_help=True)
trunk_app = typer.Typer(help="The Elastic SIP trunk Parley uses (TWILIO_TRUNK_NAME).", no_args_is_help=True)
twilio_app.add_typer(numbers_app, name="numbers")
twilio_app.add_typer(trunk_app, name="trunk")


def _client() -> tuple[Any, Any]:
    from parley.telephony.twilio.admin import Expected
    from parley.telephony.twilio.config import TwilioConfig
    from parley.telephony.twilio.rest import make_client

    s = settings()
    config = TwilioConfig.from_settings(s)
    if not config.has_credentials:
        fail("set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio console → Account info)")
    return make_client(config), Expected.from_settings(s)


def _admin(work: Any) -> Any:
    from parley.telephony.twilio.admin import AdminError

    try:
        return work()
    except AdminError as exc:
        fail(str(exc))


def _print_report(report: Any) -> None:
    for line in report.changes:
        console.print(f"[green]changed[/] {line}", highlight=False, soft_wrap=True)
    for line in report.unchanged:
        console.print(f"unchanged {line}", highlight=False, soft_wrap=True)
    if not report.changes:
        console.print("nothing to change", highlight=False)


@numbers_app.command("list")
def numbers_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The account's numbers and where each sends its calls (stream: Parley's webhook, sip: Parley's trunk)."""
    from parley.telephony.twilio.admin import list_numbers

    client, expected = _client()
    numbers = _admin(lambda: list_numbers(client, expected))
    if as_json:
        typer.echo(json.dumps([n.to_dict() for n in numbers], indent=2))
        return
    if not numbers:
        console.print("the account has no phone numbers (buy one in Twilio, then `parley twilio numbers connect`)")
        return
    table = Table("number", "sid", "mode", "voice URL / trunk", title="Twilio numbers")
    for n in numbers:
        table.add_row(n.number, n.sid, n.mode, n.voice_url or (n.trunk_sid or "-"))
    console.print(table)


@numbers_app.command("connect")
def numbers_connect(
    number: str = typer.Argument(..., help="E.164 number of the account, e.g. +14155550100."),
    mode: str = typer.Option("stream", "--mode", help="stream: Media Streams webhook; sip: attach to the trunk."),
) -> None:
    """Send a number's calls to Parley (idempotent)."""
    from parley.calls.service import CallRequestError, normalise_e164
    from parley.telephony.twilio.admin import connect_number

    if mode not in ("stream", "sip"):
        fail(f"--mode must be stream or sip, not {mode!r}")
    try:
        number = normalise_e164(number, "NUMBER")
    except CallRequestError as exc:
        fail(str(exc))
    client, expected = _client()
    _print_report(_admin(lambda: connect_number(client, number, mode, expected)))  # type: ignore[arg-type]


@trunk_app.command("ensure")
def trunk_ensure() -> None:
    """Create or update the Elastic SIP trunk: origination URI, termination credentials, IP access list."""
    from parley.telephony.twilio.admin import ensure_trunk

    client, expected = _client()
    report = _admin(lambda: ensure_trunk(client, expected))
    _print_report(report)
    console.print(f"trunk {expected.trunk_name!r}: {report.trunk_sid}; Parley dials out through "
                  f"sip:NUMBER@{expected.domain_name}", highlight=False)


@twilio_app.command("status")
def status(
    number: Optional[str] = typer.Option(None, "--number", help="Number to check (default TWILIO_PHONE_NUMBER)."),  # noqa: UP007
) -> None:
    """What Twilio has vs what Parley expects; exit 1 when anything differs."""
    from parley.telephony.twilio.admin import check_credentials, status as differences
    from parley.telephony.twilio.config import TwilioConfig

    client, expected = _client()
    config = TwilioConfig.from_settings(settings())
    console.print(_admin(lambda: check_credentials(client, config)), highlight=False)
    found = _admin(lambda: differences(client, expected, number or config.phone_number or None))
    for line in found:
        console.print(f"[red]differs[/] {line}", highlight=False, soft_wrap=True)
    if found:
        raise typer.Exit(1)
    console.print("Twilio is set up as Parley expects", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(twilio_app, name="twilio")
