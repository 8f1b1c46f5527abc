"""Under `parley up` browser and phone calls share one table of live calls, so NUM_AGENTS caps both:
with one slot taken by a browser call, a SIP INVITE (SIPp) is refused 503, and the browser call's
slot comes back when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import run_sipp, uac_scenario
from tests.webrtc.peer import BrowserPeer

pytestmark = [pytest.mark.slow, pytest.mark.sip]


async def test_a_browser_call_takes_a_slot_a_phone_call_would_need(web_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sip_port = free_port()
    web = await web_server(phone=True, num_agents=1, sip_port=sip_port, sip_transport="udp")
    gateway = web.state.gateway
    assert gateway is not None
    peer = BrowserPeer()
    async with web.client() as client:
        assert (await peer.call(client)).status_code == 200
        await eventually(lambda: peer.transcripts("agent"), timeout_s=30, what="the greeting")
        assert peer.call_id in gateway.live and gateway.active_counts()[0] == 1
        busy = await run_sipp(uac_scenario("PCMU", expect=503), f"127.0.0.1:{sip_port}", tmp_path,
                              port=free_port(), extra=["-s", "+4930123456"], timeout=15)
        assert busy.code == 0, str(busy)
        assert (await client.delete(f"/api/webrtc/calls/{peer.call_id}")).status_code == 200
        await web.wait_status(peer.call_id or "", {"completed"})
        await eventually(lambda: not gateway.live, timeout_s=5, what="the shared slot freed")
        calls, _ = await web.state.calls.list_calls()
        assert [c.channel for c in calls] == ["webrtc"], "the refused INVITE left no call record"
    await peer.close()


@pytest.mark.realtime
async def test_an_overloaded_worker_refuses_a_browser_call_with_503(web_server) -> None:  # type: ignore[no-untyped-def]
    """Load shedding covers browser calls: while the worker's event loop is over MAX_LOOP_BUSY (blocking work
    on it here), the offer is answered 503 naming the overload, and nothing is recorded."""
    from tests.telephony.test_overload import Burner

    web = await web_server(phone=True, warm=False, max_loop_busy=0.6, sip_port=free_port(),
                           sip_transport="udp")
    gateway = web.state.gateway
    assert gateway is not None
    peer = BrowserPeer()
    burner = Burner()
    burner.start()
    try:
        await eventually(lambda: gateway.overloaded("browser", count=False), timeout_s=15, interval_s=0.2,
                         what="the worker's event loop over MAX_LOOP_BUSY (60 %)")
        async with web.client() as client:
            r = await peer.call(client)
        assert r.status_code == 503, r.text
        assert "overloaded" in r.text and "MAX_LOOP_BUSY" in r.text, r.text
        assert not (await web.state.calls.list_calls())[0], "the refused offer left no call record"
    finally:
        await burner.stop()
        await peer.close()
