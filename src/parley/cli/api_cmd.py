"""`parley api`: serve the REST API."""

from __future__ import annotations

import typer

from parley.cli.common import serve_api, settings


def register(app: typer.Typer) -> None:
    @app.command("api")
    def api(
        host: str = typer.Option(None, "--host", help="Bind address (default API_HOST, 127.0.0.1)."),
        port: int = typer.Option(None, "--port", min=1, max=65535, help="Port (default API_PORT, 8000)."),
    ) -> None:
        """Serve the REST API (OpenAPI docs at /docs). Calls are queued; `parley up` also dials them."""
        serve_api(settings(), host, port)
