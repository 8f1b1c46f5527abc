"""Start the phone side inside the API process (`parley up`): the SIP gateway and the dialer."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI

from parley.logging import get_logger
from parley.telephony.gateway import Gateway

log = get_logger(__name__)


def gateway_startup(*, dial: bool = True, warm: bool = True, **gateway_options: Any):  # type: ignore[no-untyped-def]
    """An app startup hook (after the calls service's) that runs the SIP gateway and, with `dial`, the dialer."""

    async def hook(app: FastAPI, stack: AsyncExitStack) -> None:
        from parley.api.app import add_health_check

        calls = app.state.calls
        gateway = Gateway(app.state.settings, app.state.agents, calls, **gateway_options)
        if warm:
            await gateway.warm()
        await gateway.start()
        stack.push_async_callback(gateway.close)
        app.state.gateway = gateway

        async def sip_check() -> str:
            total, _ = gateway.active_counts()
            return f"listening on {gateway.settings.sip_host}:{gateway.endpoint.port}, {total} live call(s)"

        add_health_check(app, "sip", sip_check)
        if dial:
            dialer = await calls.start_dialer(gateway.place_call, limits=gateway.dialer_limits(),
                                              trunk_of=gateway.trunk_of)
            stack.push_async_callback(dialer.stop)  # before the gateway closes: no new calls meanwhile
        log.info("phone side ready", sip=f"{gateway.settings.sip_host}:{gateway.endpoint.port}",
                 default_agent=gateway.settings.default_agent, dialer=dial)

    return hook
