"""Trunk administration shared by the CLI and the API: status of a trunk in words."""

from __future__ import annotations

from typing import Any

from parley.calls.states import ACTIVE
from parley.calls.store import Store
from parley.sip.endpoint import SipEndpoint
from parley.telephony.probe import options_ping
from parley.telephony.trunks import Trunk


async def trunk_status(store: Store, trunk: Trunk, endpoint: SipEndpoint | None) -> dict[str, Any]:
    """Registration setting, OPTIONS round trip, active calls and the last error in words."""
    active = [c for c in await store.calls_in(set(ACTIVE)) if c.trunk == trunk.name]
    failed, _ = await store.list_calls(status="failed", limit=20)
    last = next((c for c in failed if c.trunk == trunk.name), None)
    status: dict[str, Any] = {
        "name": trunk.name,
        "inbound": trunk.inbound is not None,
        "outbound": trunk.outbound is not None,
        "registration": (trunk.outbound.registration if trunk.outbound else False),
        "active_calls": len(active),
        "last_error": (f"{last.end_reason} (call {last.id} at {last.ended_at:%Y-%m-%d %H:%M:%S} UTC)"
                       if last and last.ended_at else None),
        "reachable": None,
        "options": None,
        "options_rtt_ms": None,
    }
    if trunk.outbound is not None and endpoint is not None:
        probe = await options_ping(endpoint, trunk.outbound)
        status.update(reachable=probe.ok, options=probe.message, options_rtt_ms=probe.rtt_ms)
    return status
