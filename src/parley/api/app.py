"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI

import parley
from parley.agents import AgentRegistry
from parley.api import errors
from parley.api.auth import KeyRing
from parley.api.deps import require_api_key
from parley.api.guard import RequestGuard
from parley.api.openapi import describe_agents
from parley.api.health import HealthCheck, HealthRegistry
from parley.api.routers import agents as agents_routes, calls as calls_routes, health as health_routes
from parley.api.routers import metrics as metrics_routes, trunks as trunks_routes, webhook as webhook_routes
from parley.api.routers import voice_pipeline as voice_routes
from parley.api.routers import livekit as livekit_routes
from parley.api.routers import twilio as twilio_routes
from parley.api.routers import webrtc as webrtc_routes
from parley.api.routers import call_views as call_view_routes, ui as ui_routes
from parley.api.runtime import Startup, open_calls, open_livekit, open_webrtc, settle_startup_heap
from parley.api.twilio_runtime import open_twilio
from parley.api.routers import campaigns as campaigns_routes
from parley.api.state import ApiState
from parley.api.voice_engines import VoiceEngines
from parley.engine.session import Engines
from parley.settings import Settings


def create_app(
    settings: Settings,
    *,
    agents: AgentRegistry | None = None,
    api_keys: list[str] | None = None,
    startup: list[Startup] | None = None,
    voice_engines: Mapping[str, Engines] | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the API.

    `agents` defaults to the agents in `settings.agents_dir`, `api_keys` to `API_KEYS`. The lifespan opens
    the calls service, then runs the `startup` hooks in order (`runtime.gateway_startup` for the phone
    side). `voice_engines` are ready-built engines by agent key for `POST /api/voice-pipeline`; other
    agents' engines are built on first use. `freeze_heap` (a process that runs one app: the CLI): once
    started, the start-up heap is kept out of the garbage collector's full collections (`support.heap`) and
    the collector's pauses are timed (`parley_gc_pause_seconds`).
    """
    registry = agents if agents is not None else AgentRegistry.load(settings.agents_dir, settings.prompts_dir)
    state = ApiState(
        settings=settings,
        agents=registry,
        keyring=KeyRing(api_keys if api_keys is not None else settings.api_key_list),
        health=HealthRegistry(),
        voice_engines=VoiceEngines(settings, voice_engines),
    )
    state.health.add("api", _ok)
    state.health.add("agents", _agents_check(registry))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for hook in [open_calls, open_livekit, *(startup or []), open_twilio, open_webrtc]:
                await hook(state, stack)
            if freeze_heap:
                settle_startup_heap()
            yield

    app = FastAPI(
        title="Parley",
        version=parley.__version__,
        description="Voice-AI agents on phone lines and the web. Send `X-API-Key` on every /api route.",
        lifespan=lifespan,
    )
    state.attach(app)
    errors.install(app)
    app.include_router(health_routes.router)
    app.include_router(livekit_routes.router)  # public: LiveKit's signature authenticates it
    app.include_router(twilio_routes.router)  # public: Twilio's signature / stream token instead of X-API-Key
    protect = [Depends(require_api_key)]
    for module in (agents_routes, calls_routes, webhook_routes, metrics_routes, voice_routes, trunks_routes,
                   webrtc_routes):
        app.include_router(module.router, dependencies=protect, responses=errors.KEYED_ROUTE_ERRORS)
    app.include_router(call_view_routes.router, dependencies=protect, responses=errors.KEYED_ROUTE_ERRORS)
    app.include_router(campaigns_routes.router, dependencies=protect, responses=errors.KEYED_ROUTE_ERRORS)
    ui_routes.install(app)  # the dashboard at /ui/ (its own sign-in; public: the sign-in page and assets)
    # Keys before bodies, and every body capped (api/guard.py); the voice upload keeps its audio cap.
    app.add_middleware(RequestGuard, fastapi_app=app, keyring=state.keyring, marker=require_api_key,
                       sessions=state.sessions,
                       caps={"/api/voice-pipeline": voice_routes.MAX_BYTES + 1024 * 1024,
                             "/api/campaigns/{campaign_id}/recipients": 256 * 1024 * 1024,  # spooled to disk
                             "/api/dnc": 8 * 1024 * 1024})  # up to 100,000 numbers
    describe_agents(app, registry)  # the OpenAPI `agent` fields list the loaded agents
    return app


async def _ok() -> str:
    return "ok"


def _agents_check(registry: AgentRegistry) -> HealthCheck:
    async def check() -> str:
        if not len(registry):
            raise RuntimeError("no agents loaded")
        return f"{len(registry)} loaded"

    return check
