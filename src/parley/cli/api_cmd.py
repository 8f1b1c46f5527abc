"""`parley api`: serve the REST API."""

from __future__ import annotations

import typer

from parley.cli.common import fail, settings


def register(app: typer.Typer) -> None:
    @app.command("api")
    def api(
        host: str = typer.Option(None, "--host", help="Bind address (default API_HOST, 127.0.0.1)."),
        port: int = typer.Option(None, "--port", min=1, max=65535, help="Port (default API_PORT, 8000)."),
    ) -> None:
        """Serve the REST API (OpenAPI docs at /docs)."""
        import uvicorn

        from parley.agents import AgentError
        from parley.api import create_app
        from parley.api.auth import generate_key
        from parley.logging import get_logger

        s = settings()
        log = get_logger("parley.api")
        keys = s.api_key_list
        if not keys:
            keys = [generate_key()]
            log.warning("API_KEYS is not set: generated a key for this run only; set API_KEYS to keep one",
                        generated_key=keys[0])
        try:
            application = create_app(s, api_keys=keys)
        except AgentError as exc:
            fail("agents are invalid:\n  " + "\n  ".join(exc.problems))
        uvicorn.run(application, host=host or s.api_host, port=port or s.api_port, log_config=None)
