"""`parley up`: everything in one process — API, SIP endpoint, dialer, conversations."""

from __future__ import annotations

import typer

from parley.cli.common import serve_api, settings


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        host: str = typer.Option(None, "--host", help="API bind address (default API_HOST, 127.0.0.1)."),
        port: int = typer.Option(None, "--port", min=1, max=65535, help="API port (default API_PORT, 8000)."),
        sip_host: str = typer.Option(None, "--sip-host", help="SIP bind address (default SIP_HOST)."),
        sip_port: int = typer.Option(None, "--sip-port", min=1, max=65535, help="SIP port (default SIP_PORT, 5060)."),
        dial: bool = typer.Option(True, "--dial/--no-dial", help="Run the outbound dialer in this process."),
    ) -> None:
        """Run the whole platform in one process on offline defaults: a softphone can call it at once."""
        from parley.logging import get_logger
        from parley.api.runtime import gateway_startup

        s = settings()
        s = s.model_copy(update={k: v for k, v in {"sip_host": sip_host, "sip_port": sip_port}.items() if v})
        get_logger("parley.up").info("starting Parley", api=f"http://{host or s.api_host}:{port or s.api_port}",
                                     sip=f"sip:{s.sip_host}:{s.sip_port}", agent=s.default_agent)
        serve_api(s, host, port, startup=[gateway_startup(dial=dial)])
