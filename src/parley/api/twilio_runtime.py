"""The Twilio part of the API's lifespan: the bridge behind `/twilio/*`, and Twilio for the dialer.

Runs after the other start-up hooks, so under `parley up` it shares the SIP gateway's engines and counts
its live calls against the same capacity; when a dialer runs, calls on the `twilio-streams` trunk are
placed through Twilio's REST API instead of the SIP gateway.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from parley.api.state import ApiState
from parley.calls.outcomes import DialOutcome
from parley.calls.records import Call
from parley.logging import get_logger

log = get_logger(__name__)


async def open_twilio(state: ApiState, stack: AsyncExitStack) -> None:
    """Start the Twilio bridge (no network: it only answers Twilio) and route Twilio calls of the dialer."""
    from parley.telephony.twilio.bridge import TRUNK, TwilioBridge

    calls = state.calls
    if calls is None:
        return
    gateway = state.gateway

    def live_elsewhere() -> list[tuple[str | None, str]]:
        return [(lc.trunk, lc.agent) for lc in gateway.live.values()] if gateway is not None else []

    bridge = TwilioBridge(state.settings, state.agents, calls,
                          engines=gateway.engines if gateway is not None else None,
                          live_elsewhere=live_elsewhere,
                          overloaded=(lambda: gateway.overloaded("twilio")) if gateway is not None else None)
    stack.push_async_callback(bridge.close)
    state.twilio = bridge
    dialer = calls.dialer
    if dialer is not None:
        sip_place = dialer.place_call

        async def place(call: Call) -> DialOutcome:
            return await (bridge.place_call(call) if call.trunk == TRUNK else sip_place(call))

        dialer.place_call = place
        log.info("dialer places calls on trunk %r through Twilio" % TRUNK)
