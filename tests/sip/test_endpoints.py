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
