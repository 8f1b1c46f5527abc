"""The side-port app of `parley worker`: `/health` and `/metrics` only, no public API.

A worker runs the SIP endpoint, the conversations and the dialer; its HTTP side port is for the load
balancer's and Prometheus's eyes (bind it to an internal address). It does not migrate the database: the
API does that, once (`parley api` / `parley up`); the worker waits until the schema is at the head.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

import parley
from parley.agents import AgentRegistry
from parley.api import errors
from parley.api.auth import KeyRing
from parley.api.health import HealthRegistry
from parley.api.routers import health as health_routes
from parley.api.routers import metrics as metrics_routes
from parley.api.runtime import Startup, open_calls_with, settle_startup_heap
from parley.api.state import ApiState
from parley.api.voice_engines import VoiceEngines
from parley.settings import Settings


def create_worker_app(settings: Settings, *, agents: AgentRegistry | None = None,
                      startup: list[Startup] | None = None, schema_wait_s: float = 120.0,
                      freeze_heap: bool = False) -> FastAPI:
    """A FastAPI app whose lifespan opens the calls service (without migrating) and runs `startup`
    (`runtime.gateway_startup`), then with `freeze_heap` keeps the start-up heap out of the garbage
    collector's full collections (`support.heap`) and times its pauses; routes: `/health` and `/metrics`,
    both without a key."""
    registry = agents if agents is not None else AgentRegistry.load(settings.agents_dir, settings.prompts_dir)
    state = ApiState(settings=settings, agents=registry, keyring=KeyRing([]), health=HealthRegistry(),
                     voice_engines=VoiceEngines(settings, None))

    async def ok() -> str:
        return "ok"

    state.health.add("worker", ok)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for hook in [open_calls_with(migrate=False, schema_wait_s=schema_wait_s), *(startup or [])]:
                await hook(state, stack)
            if freeze_heap:
                settle_startup_heap()
            yield

    app = FastAPI(title="Parley worker", version=parley.__version__, lifespan=lifespan,
                  description="A Parley worker's side port: /health and /metrics.")
    state.attach(app)
    errors.install(app)
    app.include_router(health_routes.router)
    app.include_router(metrics_routes.router)
    return app

