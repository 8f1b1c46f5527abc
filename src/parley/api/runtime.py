"""What runs inside the API process's lifespan: the calls service always, the phone side under `parley up`.

A start-up hook gets the app's `ApiState` and the lifespan's exit stack: it opens its part, registers the
part's health check, sets it on the state, and pushes its shutdown on the stack (closed in reverse order).
`create_app` runs `open_calls` first, then the hooks it was given, so `gateway_startup` finds the calls
service running.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from parley.api.state import ApiState
from parley.calls import CallsService
from parley.calls.dialer import PlaceCall
from parley.calls.metrics import FROZEN_OBJECTS, watch_gc_pauses
from parley.logging import get_logger
from parley.settings import Settings
from parley.support.heap import freeze_startup_heap

log = get_logger(__name__)

#: A lifespan hook: opens a part of the platform and pushes its shutdown on the stack.
Startup = Callable[[ApiState, AsyncExitStack], Awaitable[None]]


async def open_calls(state: ApiState, stack: AsyncExitStack) -> None:
    """Open the calls service (migrations, queue, webhook sender); health: db, queue, and redis if used
    (then also the workers' registry and the reaper of lost workers)."""
    await _open_calls(state, stack, migrate=True, schema_wait_s=0.0)


def open_calls_with(*, migrate: bool, schema_wait_s: float = 120.0) -> Startup:
    """`open_calls` for a worker: without `migrate` it waits up to `schema_wait_s` for the API to migrate."""

    async def hook(state: ApiState, stack: AsyncExitStack) -> None:
        await _open_calls(state, stack, migrate=migrate, schema_wait_s=schema_wait_s)

    return hook


async def _open_calls(state: ApiState, stack: AsyncExitStack, *, migrate: bool, schema_wait_s: float) -> None:
    from parley.calls.queue.redis import RedisQueue

    if not migrate:
        from parley.calls.db import wait_for_schema

        await wait_for_schema(state.settings.effective_database_url, schema_wait_s)
    service = await CallsService.open(state.settings, agents=state.agents, migrate=migrate)
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
        from parley.calls.cluster import Cluster, describe_workers

        cluster = await Cluster.open(state.settings, service, worker_identity(state.settings))
        stack.push_async_callback(cluster.close)
        state.cluster = cluster

        async def workers_check() -> str:
            return describe_workers(await cluster.workers())

        state.health.add("workers", workers_check)


def worker_identity(settings: Settings) -> str:
    """This process's worker id: WORKER_ID, else host:pid (also its queue consumer name)."""
    from parley.calls.dialer import default_worker_id

    return settings.worker_id or default_worker_id()


async def open_livekit(state: ApiState, stack: AsyncExitStack) -> None:
    """With LIVEKIT_URL/KEY/SECRET set: room sessions for `POST /livekit/webhook` (health: livekit)."""
    from parley.telephony.livekit.config import LiveKitConfig, LiveKitConfigError
    from parley.telephony.livekit.sessions import RoomSessions

    s = state.settings
    if not s.livekit_url or state.calls is None:
        return
    try:
        config = LiveKitConfig.from_settings(s)
    except LiveKitConfigError as exc:
        log.warning("LiveKit rooms are off", reason=str(exc))
        return
    sessions = RoomSessions(s, state.agents, state.calls, config)
    stack.push_async_callback(sessions.close)
    state.livekit = sessions

    async def livekit_check() -> str:
        return f"{config.http_url}, {len(sessions.live)} room session(s)"

    state.health.add("livekit", livekit_check)


def settle_startup_heap() -> None:
    """Once a process's app has started: time the garbage collector's pauses and keep the start-up heap out
    of its full collections (`support.heap`; `parley_gc_frozen_objects`)."""
    watch_gc_pauses()
    FROZEN_OBJECTS.set(freeze_startup_heap())


def gateway_startup(*, dial: bool = True, warm: bool = True,
                    campaign_clock: Callable[[], datetime] | None = None) -> Startup:
    """A hook that runs the SIP gateway (engines warmed first with `warm`) and, with `dial`, the dialer and
    the campaign runner (whose "now" is `campaign_clock`, the wall clock unless a test drives one)."""

    async def hook(state: ApiState, stack: AsyncExitStack) -> None:
        from parley.telephony.gateway import Gateway

        calls = state.calls
        if calls is None:
            raise RuntimeError("gateway_startup needs the calls service; run it after open_calls")
        from parley.calls.slots import CallSlots
        from parley.calls.workers import WorkerInfo

        settings = state.settings
        cluster = state.cluster
        worker_id = worker_identity(settings)
        slots = CallSlots(settings.num_agents, shared=cluster.slots if cluster else None)
        gateway = Gateway(settings, state.agents, calls, slots=slots, worker_id=worker_id,
                          cluster=cluster is not None)
        if warm:
            await gateway.warm()
        await gateway.start()
        if cluster is not None:
            stack.push_async_callback(cluster.leave)  # after the gateway closed: out of the registry
        stack.push_async_callback(gateway.close)
        state.gateway = gateway
        if state.livekit is not None:
            state.livekit.use_engines(gateway.engines)  # one set of models for SIP calls and LiveKit rooms
        if cluster is not None:
            sip_host = settings.sip_public_host or settings.sip_host
            if sip_host in ("0.0.0.0", "", "::"):  # bound to every address: register the one peers reach
                sip_host = await asyncio.to_thread(_own_address)
            if state.health_url.startswith("http://0.0.0.0:"):
                state.health_url = state.health_url.replace("0.0.0.0", sip_host, 1)

            def card() -> WorkerInfo:
                return WorkerInfo(id=worker_id, sip=f"{sip_host}:{gateway.endpoint.port}",
                                  capacity=settings.num_agents, live=len(gateway.live),
                                  state="draining" if gateway.draining else "running",
                                  health_url=state.health_url, loop_busy=round(gateway.load.busy, 3))

            await cluster.join(card)

        async def sip_check() -> str:
            total, _ = gateway.active_counts()
            return f"listening on {gateway.settings.sip_host}:{gateway.endpoint.port}, {total} live call(s)"

        state.health.add("sip", sip_check)
        if dial:
            place: PlaceCall = gateway.place_call
            if state.livekit is not None:  # `livekit:<trunk>` calls go out through LiveKit SIP
                from parley.telephony.livekit.outbound import LiveKitDialer

                place = LiveKitDialer(state.livekit).routed(gateway.place_call)
            dialer = await calls.start_dialer(place, limits=gateway.dialer_limits(),
                                              trunk_of=gateway.trunk_of, worker_id=worker_id,
                                              admit=gateway.admit_outbound, release_slot=gateway.release_outbound)
            stack.push_async_callback(dialer.stop)  # before the gateway closes: no new calls meanwhile
            from parley.campaigns.runner import CampaignRunner

            runner = CampaignRunner(calls) if campaign_clock is None else CampaignRunner(calls, clock=campaign_clock)
            await runner.start()
            stack.push_async_callback(runner.stop)  # before the dialer stops: no new campaign calls meanwhile
            state.campaigns = runner

        async def drain() -> None:
            """First on shutdown (SIGTERM): no new calls, the registry says draining, live calls finish."""
            gateway.draining = True
            if cluster is not None:
                await cluster.announce()
            left = await gateway.drain(settings.drain_timeout_s)
            if left:
                log.warning("drain timeout: hanging up live calls", live=left)

        stack.push_async_callback(drain)
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

    service = WebRtcCalls(state.settings, state.agents, calls, engines=engines, live_table=live_table,
                          gateway=lambda: state.gateway)
    service.start()
    stack.push_async_callback(service.close)
    state.webrtc = service
def _own_address() -> str:
    """This host's address as its peers see it (a container's IP), for the registry card."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
