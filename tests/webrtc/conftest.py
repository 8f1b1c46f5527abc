"""Fixtures for browser calls: a real API server (uvicorn on a free port) with the offline receptionist's
engines warmed, and speech at 48 kHz for the browser peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from parley.agents import AgentRegistry
from parley.api import ApiState, create_app
from parley.api.runtime import gateway_startup
from parley.media.wav import read_wav
from tests.conftest import ROOT, free_port
from tests.eventually import eventually
from tests.telephony.conftest import webhook_receiver  # noqa: F401  (a real HTTP server for webhooks)

KEY = {"X-API-Key": "test-key"}


@pytest.fixture(scope="session")
def agents() -> AgentRegistry:
    return AgentRegistry.load(ROOT / "agents", ROOT / "prompts")


@dataclass
class WebServer:
    app: Any
    url: str

    @property
    def state(self) -> ApiState:
        return ApiState.of(self.app)

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=kw.pop("headers", KEY), timeout=30, **kw)

    async def wait_status(self, call_id: str, statuses: set[str], timeout: float = 20.0) -> Any:
        calls = self.state.calls
        assert calls is not None

        async def in_status() -> Any:
            call = await calls.get_call(call_id)
            return call if call is not None and call.status in statuses else None

        return await eventually(in_status, timeout_s=timeout, what=f"call {call_id} in one of {statuses}")


@pytest.fixture
async def web_server(settings, agents) -> AsyncIterator[Callable[..., Awaitable[WebServer]]]:  # type: ignore[no-untyped-def]
    """`await start(**settings_updates)` -> the API serving browser calls on 127.0.0.1 (ICE on loopback)."""
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[Any]] = []

    async def start(*, warm: bool = True, registry: AgentRegistry | None = None, phone: bool = False,
                    **updates: Any) -> WebServer:
        s = settings.model_copy(update={"webrtc_ice_addresses": "127.0.0.1", **updates})
        registry = registry or agents
        hooks = [gateway_startup(dial=False, warm=False)] if phone else []
        app = create_app(s, agents=registry, api_keys=["test-key"], startup=hooks)
        port = free_port(kind=1)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve()))
        await eventually(lambda: server.started, timeout_s=30, what="the API server started")
        web = WebServer(app, f"http://127.0.0.1:{port}")
        if warm:
            await web.state.voice_engines.for_agent(registry.get(s.default_agent))
        return web

    yield start
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def speech48(speech_wav):  # type: ignore[no-untyped-def]
    """`speech48(text, engine="piper")` -> mono int16 speech at 48 kHz."""

    def make(text: str, engine: str = "piper") -> np.ndarray:
        pcm, rate = read_wav(speech_wav(text, engine=engine, rate=48000))
        assert rate == 48000
        return pcm

    return make
