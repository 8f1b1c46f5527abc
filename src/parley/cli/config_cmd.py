"""`parley config`: the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from parley.cli.common import console, settings


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Show the effective settings (from environment and .env); secrets are masked."""
        values = settings().masked()
        if as_json:
            typer.echo(json.dumps(values, indent=2, default=str))
            return
        table = Table("setting", "value", title="Effective settings")
        for name, value in values.items():
            table.add_row(name.upper(), "" if value is None else str(value))
        console.print(table)
