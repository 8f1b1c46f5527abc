"""Entry point: builds the Typer app from the command modules."""

from __future__ import annotations

import importlib
from typing import Optional

import typer

import parley
from parley.logging import configure

#: Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = [
    "parley.cli.config_cmd",
    "parley.cli.agents_cmd",
    "parley.cli.api_cmd",
    "parley.cli.tasks_cmd",
    "parley.cli.calls_cmd", "parley.cli.db_cmd",
    "parley.cli.sip_cmd",
    "parley.cli.up_cmd", "parley.cli.trunk_cmd", "parley.cli.doctor_cmd",
    "parley.cli.talk_cmd",
    "parley.cli.livekit_cmd",
    "parley.cli.twilio_cmd",
    "parley.cli.campaigns_cmd",
    "parley.cli.worker_cmd", "parley.cli.cluster_cmd",
]

app = typer.Typer(
    name="parley",
    help="Parley: voice-AI agents on phone lines (SIP) and the web.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"parley {parley.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP007 - typer needs Optional
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    log_json: bool = typer.Option(False, "--log-json", help="Log JSON lines instead of text."),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING or ERROR."),  # noqa: UP007
) -> None:
    import os

    configure(
        level=(log_level or os.environ.get("LOG_LEVEL") or "INFO"),
        json=log_json or os.environ.get("LOG_JSON", "").lower() in ("1", "true", "yes"),
    )


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
