"""Helpers shared by CLI commands: settings, consoles, and failing with one readable line."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from parley.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` to stderr and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    """Settings for this command; a bad value ends the command with a readable line."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]).upper()
        fail(f"setting {field}: {first['msg']} (check the environment or .env)")
