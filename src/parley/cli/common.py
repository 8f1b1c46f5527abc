"""Helpers shared by CLI commands: settings, consoles, and failing with one readable line."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from parley.settings import Settings, get_settings

if TYPE_CHECKING:
    from parley.api.runtime import Startup

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


def serve_api(s: Settings, host: str | None, port: int | None, startup: list[Startup] | None = None) -> None:
    """Run the API with uvicorn until interrupted; generates a key for this run when API_KEYS is empty.

    `startup` hooks run in the app's lifespan after the calls service opens (`parley up` adds the phone side)."""
    import uvicorn

    from parley.agents import AgentError
    from parley.api import create_app
    from parley.api.auth import generate_key
    from parley.logging import get_logger

    log = get_logger("parley.api")
    keys = s.api_key_list
    if not keys:
        keys = [generate_key()]
        log.warning("API_KEYS is not set: generated a key for this run only; set API_KEYS to keep one",
                    generated_key=keys[0])
    try:
        application = create_app(s, api_keys=keys, startup=startup, freeze_heap=True)
    except AgentError as exc:
        fail("agents are invalid:\n  " + "\n  ".join(exc.problems))
    bind, bind_port = host or s.api_host, port or s.api_port
    console.print(dashboard_line(bind, bind_port, generated=not s.api_key_list), highlight=False, soft_wrap=True)
    # WebSockets (Twilio Media Streams, live-call events) without per-message compression: base64 audio
    # barely compresses, and deflating ~100 messages per second per call cost ~8 % of the event loop.
    uvicorn.run(application, host=bind, port=bind_port, log_config=None, ws="websockets-sansio",
                ws_per_message_deflate=False)


def dashboard_line(host: str, port: int, *, generated: bool) -> str:
    """What `parley up`/`parley api` print at start: where the dashboard is and which key signs in."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
    key = ("sign in with the generated key above (it lasts for this run)" if generated
           else "sign in with one of API_KEYS")
    return f"Dashboard: http://{shown}:{port}/ui/ ({key})"
