"""`parley worker`: a SIP/RTP worker — endpoint, conversations, dialer — with /health and /metrics on a
side port and no public API. Run several behind Kamailio (docs/deploy.md); `parley api` serves the API."""

from __future__ import annotations

import socket

import typer

from parley.cli.common import fail, settings


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        sip_host: str = typer.Option(None, "--sip-host", help="SIP bind address (default SIP_HOST)."),
        sip_port: int = typer.Option(None, "--sip-port", min=0, max=65535,
                                     help="SIP port (default SIP_PORT; 0 = a free one, registered)."),
        health_host: str = typer.Option("127.0.0.1", "--health-host", help="Side port bind address."),
        health_port: int = typer.Option(None, "--health-port", min=0, max=65535,
                                        help="Side port for /health and /metrics (default WORKER_HEALTH_PORT; "
                                             "0 = a free one)."),
        dial: bool = typer.Option(True, "--dial/--no-dial", help="Consume the outbound queue here."),
        worker_id: str = typer.Option(None, "--id", help="Worker id in the registry (default WORKER_ID, host:pid)."),
    ) -> None:
        """Run a worker: answer and place calls; register in the cluster (REDIS_URL); drain on SIGTERM."""
        import uvicorn

        from parley.agents import AgentError
        from parley.api.runtime import gateway_startup
        from parley.api.state import ApiState
        from parley.api.worker_app import create_worker_app
        from parley.logging import get_logger

        s = settings()
        updates = {"sip_host": sip_host, "sip_port": sip_port, "worker_id": worker_id}
        s = s.model_copy(update={k: v for k, v in updates.items() if v is not None})
        if not s.redis_url:
            get_logger("parley.worker").warning(
                "REDIS_URL is not set: this worker is alone (no registry, caps per process); "
                "set REDIS_URL (and DATABASE_URL) to run several")
        port = s.worker_health_port if health_port is None else health_port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((health_host, port))
        except OSError as exc:
            fail(f"cannot bind the worker's side port {health_host}:{port}: {exc.strerror}")
        bound = sock.getsockname()[1]
        try:
            application = create_worker_app(s, startup=[gateway_startup(dial=dial)], freeze_heap=True)
        except AgentError as exc:
            fail("agents are invalid:\n  " + "\n  ".join(exc.problems))
        ApiState.of(application).health_url = f"http://{health_host}:{bound}/health"
        get_logger("parley.worker").info("starting Parley worker", sip=f"sip:{s.sip_host}:{s.sip_port}",
                                         health=f"http://{health_host}:{bound}/health")
        server = uvicorn.Server(uvicorn.Config(application, log_config=None, timeout_graceful_shutdown=5))
        server.run(sockets=[sock])
