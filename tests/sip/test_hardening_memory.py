"""Issue 18, defect 10: what a 2,000-INVITE flood leaves behind is bounded by the caps. Each INVITE
the endpoint takes on holds a server transaction (request, last response, timers up to 192 s), an
IncomingCall and its handler task; the per-source and total INVITE caps answer the rest 503
statelessly, so the tables (and the memory high-water they cause) stop growing at the caps, even
when the flood comes from many source addresses."""

from __future__ import annotations

import asyncio
import os
import socket

from parley.sip.call import IncomingCall
from tests.eventually import eventually
from tests.sip.attack import request


def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_invite_flood_state_is_bounded_by_the_caps(endpoint_factory) -> None:
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(invites_per_source=50, invites_total=200,
                                                 requests_per_second=0))
    hold = asyncio.Event()

    async def thinks_forever(incoming: IncomingCall) -> None:
        await incoming.ring()
        await hold.wait()

    ep.on_incoming = thinks_forever
    start_rss = rss()

    def flood() -> None:
        socks = []
        for k in range(8):  # eight source addresses
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{2 + k}", 0))
            socks.append(s)
        for i in range(2000):
            s = socks[i % 8]
            s.sendto(request("INVITE", ep.port, src_port=s.getsockname()[1], call_id=os.urandom(8).hex(),
                             headers="X-Padding: " + "p" * 1000),
                     ("127.0.0.1", ep.port))
        for s in socks:
            s.close()

    await asyncio.to_thread(flood)
    await eventually(lambda: ep.transport.stats["received"] >= 1900, timeout_s=10)
    await asyncio.sleep(0.2)
    assert ep.transactions.invites <= 200
    assert len(ep.transactions.server) <= 200 + 10
    assert len(ep._tasks) <= 200 + 10
    assert ep.transport.stats.get("invite_cap", 0) >= 1500
    assert rss() - start_rss < 40 * 2**20, f"RSS grew {(rss() - start_rss) / 2**20:.1f} MB"
    hold.set()
