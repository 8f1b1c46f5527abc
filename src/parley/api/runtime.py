"""What runs inside the API process's lifespan: the calls service always, the phone side under `parley up`.

A start-up hook gets the app's `ApiState` and the lifespan's exit stack: it opens its part, registers the
part's health check, sets it on the state, and pushes its shutdown on the stack (closed in reverse order).
`create_app` runs `open_calls` first, then the hooks it was given, so `gateway_startup` finds the calls
service running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from parley.api.state import ApiState
from parley.calls import CallsService
from parley.logging import get_logger

log = get_logger(__name__)

#: A lifespan hook: opens a part of the platform and pushes its shutdown on the stack.
Startup = Callable[[ApiState, AsyncExitStack], Awaitable[None]]


async def open_calls(state: ApiState, stack: AsyncExitStack) -> None:
    """Open the calls service (migrations, queue, webhook sender); health: db, queue, and redis if used."""
    from parley.calls.queue.redis import RedisQueue

    service = await CallsService.open(state.settings, agents=state.agents)
    stack.push_async_callback(service.close)
    state.calls = service
    state.health.add("db", service.health_db)
    state.health.add("queue", service.health_queue)
    queue = service.queue
    if isinstance(queue, RedisQueue):
        async def redis_check() -> str:
            await queue.redis.ping()
            return "ok"

        state.health.add("redis", redis_check)


def gateway_startup(*, dial: bool = True, warm: bool = True) -> Startup:
    """A hook that runs the SIP gateway (engines warmed first with `warm`) and, with `dial`, the dialer."""

    async def hook(state: ApiState, stack: AsyncExitStack) -> None:
        from parley.telephony.gateway import Gateway

        calls = state.calls
        if calls is None:
            raise RuntimeError("gateway_startup needs the calls service; run it after open_calls")
        gateway = Gateway(state.settings, state.agents, calls)
        if warm:
            await gateway.warm()
        await gateway.start()
        stack.push_async_callback(gateway.close)
        state.gateway = gateway

        async def sip_check() -> str:
            total, _ = gateway.active_counts()
            return f"listening on {gateway.settings.sip_host}:{gateway.endpoint.port}, {total} live call(s)"

        state.health.add("sip", sip_check)
        if dial:
            dialer = await calls.start_dialer(gateway.place_call, limits=gateway.dialer_limits(),
                                              trunk_of=gateway.trunk_of)
            stack.push_async_callback(dialer.stop)  # before the gateway closes: no new calls meanwhile
        log.info("phone side ready", sip=f"{gateway.settings.sip_host}:{gateway.endpoint.port}",
                 default_agent=gateway.settings.default_agent, dialer=dial)

    return hook


async def open_webrtc(state: ApiState, stack: AsyncExitStack) -> None:
    """Serve browser calls (WebRTC): they share the SIP gateway's live-call table and engines when one runs,
    else use the API's own engines (`POST /api/voice-pipeline`'s)."""
    from parley.agents import Agent
    from parley.engine.session import Engines
    from parley.webrtc.service import WebRtcCalls

    calls = state.calls
    if calls is None:
        raise RuntimeError("open_webrtc needs the calls service; run it after open_calls")

    async def engines(agent: Agent) -> Engines:
        if state.gateway is not None:
            return await state.gateway.engines(agent)
        return await state.voice_engines.for_agent(agent)

    def live_table() -> dict[str, Any] | None:
        return state.gateway.live if state.gateway is not None else None

    service = WebRtcCalls(state.settings, state.agents, calls, engines=engines, live_table=live_table)
    service.start()
    stack.push_async_callback(service.close)
    state.webrtc = service
