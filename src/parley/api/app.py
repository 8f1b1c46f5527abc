"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

import parley
from parley.agents import AgentRegistry
from parley.api import errors
from parley.api.auth import KeyRing, require_api_key
from parley.api.health import HealthCheck, router as health_router
from parley.api.routers import agents as agents_router
from parley.api.routers import calls as calls_router, metrics as metrics_router, webhook as webhook_router
from parley.api.routers import trunks as trunks_router, voice_pipeline as voice_pipeline_router
from parley.settings import Settings

#: Runs inside the app's lifespan; may register health checks, routers and state on the app.
Startup = Callable[[FastAPI, AsyncExitStack], Awaitable[None]]


def create_app(
    settings: Settings,
    *,
    agents: AgentRegistry | None = None,
    api_keys: list[str] | None = None,
    startup: list[Startup] | None = None,
) -> FastAPI:
    """Build the API. `startup` hooks (calls service, SIP gateway …) run inside the lifespan."""
    registry = agents if agents is not None else AgentRegistry.load(settings.agents_dir, settings.prompts_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for hook in [calls_router.startup(), *(startup or [])]:
                await hook(app, stack)
            yield

    app = FastAPI(
        title="Parley",
        version=parley.__version__,
        description="Voice-AI agents on phone lines and the web. Send `X-API-Key` on every /api route.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.agents = registry
    app.state.keyring = KeyRing(api_keys if api_keys is not None else settings.api_key_list)
    app.state.health_checks = {"api": _ok, "agents": _agents_check(registry)}
    errors.install(app)
    app.include_router(health_router)
    protect = [Depends(require_api_key)]
    app.include_router(agents_router.router, dependencies=protect)
    for r in (calls_router.router, webhook_router.router, metrics_router.router, voice_pipeline_router.router,
              trunks_router.router):
        app.include_router(r, dependencies=protect)
    return app


async def _ok() -> str:
    return "ok"


def _agents_check(registry: AgentRegistry) -> HealthCheck:
    async def check() -> str:
        if not len(registry):
            raise RuntimeError("no agents loaded")
        return f"{len(registry)} loaded"

    return check


def add_health_check(app: FastAPI, name: str, check: HealthCheck) -> None:
    """Register another part for `/health`."""
    app.state.health_checks[name] = check


def protected(app: FastAPI, router: Any) -> None:
    """Include `router` behind the API key."""
    app.include_router(router, dependencies=[Depends(require_api_key)])
