"""Two Parley endpoints call each other: RFC 4733 DTMF, hold/resume by re-INVITE, a refused
transfer, and a BYE racing nothing. Both sides are the real stack over loopback UDP/TCP."""

from __future__ import annotations

import asyncio

import pytest

from parley.sip.call import Call, IncomingCall
from tests.eventually import eventually, udp_port_bound

pytestmark = [pytest.mark.sip]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_dtmf_hold_and_refused_transfer(endpoint_factory, transport: str) -> None:
    callee_ep = await endpoint_factory()
    caller_ep = await endpoint_factory()
    answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
    refer_targets: list[str] = []

    async def refuse(target: str) -> bool:
        refer_targets.append(target)
        return False

    async def handler(incoming: IncomingCall) -> None:
        assert incoming.called_number == "2000"
        assert incoming.from_display_name == "Front Desk"
        await incoming.ring()
        call = await incoming.accept()
        call.on_refer = refuse
        answered.set_result(call)

    callee_ep.on_incoming = handler
    out = await caller_ep.invite(f"sip:2000@127.0.0.1:{callee_ep.port};transport={transport}",
                                 from_="sip:1000@127.0.0.1", display_name="Front Desk", timeout=5)
    progress = [p.code async for p in out]
    assert progress[-2:] == [180, 200]
    caller = await out.answered()
    callee = await asyncio.wait_for(answered, 5)

    holds: list[bool] = []
    callee.on_hold_change = holds.append
    await caller.send_dtmf("42#")
    digits = []
    async for digit in callee.dtmf_events():
        digits.append(digit)
        if len(digits) == 3:
            break
    assert digits == ["4", "2", "#"]

    assert await caller.hold(True) is True
    assert callee.remote_hold is True and caller.on_hold
    assert await caller.hold(False) is True
    assert holds == [True, False]

    assert await caller.transfer("sip:3000@127.0.0.1", timeout=5) is False
    assert refer_targets == ["sip:3000@127.0.0.1"]

    await callee.hangup()
    assert await asyncio.wait_for(caller.wait_ended(), 5) == "remote_bye"
    assert callee.end_reason == "local_bye"
    assert not caller_ep.calls and not callee_ep.calls


async def test_no_free_media_port_answers_503_and_keeps_serving(endpoint_factory) -> None:
    from parley.sip.errors import CallFailed
    from tests.conftest import free_port

    lo = free_port() & ~1
    callee_ep = await endpoint_factory(rtp_port_range=(lo, lo + 2))  # room for exactly one call
    caller_ep = await endpoint_factory()
    accepted: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        accepted.append(await incoming.accept())

    callee_ep.on_incoming = handler
    first = await (await caller_ep.invite(f"sip:1@127.0.0.1:{callee_ep.port}", timeout=5)).answered()
    second = await caller_ep.invite(f"sip:2@127.0.0.1:{callee_ep.port}", timeout=5)
    with pytest.raises(CallFailed) as info:
        await second.answered()
    assert info.value.code == 503
    await first.hangup()
    await asyncio.wait_for(accepted[0].wait_ended(), 5)
    await eventually(lambda: not udp_port_bound(lo) and not udp_port_bound(lo + 1),
                     what="the first call's RTP/RTCP ports released")
    third = await (await caller_ep.invite(f"sip:3@127.0.0.1:{callee_ep.port}", timeout=5)).answered()
    await third.hangup()


async def test_the_endpoint_s_t1_sets_how_long_a_silent_peer_is_waited_for(endpoint_factory) -> None:
    """RFC 3261 timers per endpoint: with T1 = 50 ms an OPTIONS nobody answers fails after 64*T1 = 3.2 s
    (the default T1 would wait 32 s), having been retransmitted on UDP meanwhile."""
    import socket
    import time

    from parley.sip.errors import TransactionTimeout
    from parley.sip.message import parse_message
    from parley.sip.transaction import SipTimers
    from tests.sip.attack import request

    with pytest.raises(ValueError, match="0 < T1 <= T2"):
        SipTimers(t1=5.0, t2=4.0)
    ep = await endpoint_factory(timers=SipTimers(t1=0.05))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    try:
        req = parse_message(request("OPTIONS", silent.getsockname()[1], src_port=ep.port))
        t0 = time.monotonic()
        with pytest.raises(TransactionTimeout):
            await ep.request(req)  # type: ignore[arg-type]
        waited = time.monotonic() - t0
        assert 3.0 <= waited < 10.0, waited
        copies = 0
        while True:
            try:
                silent.recv(65535)
            except BlockingIOError:
                break
            copies += 1
        assert copies >= 5  # the first send and its retransmissions at T1, 2*T1, 4*T1 … capped at T2
    finally:
        silent.close()
