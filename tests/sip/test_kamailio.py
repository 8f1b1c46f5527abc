"""Kamailio (a real SIP proxy) in the path with Record-Route, both directions: SIPp calls through
it and we answer; we call SIPp through it as outbound proxy. Our BYE must follow the route set
back through the proxy (loose routing)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from parley.sip.call import Call, IncomingCall
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.sipp import run_sipp, sipp_server, uac_scenario

pytestmark = [pytest.mark.sip]

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    if ($rp == {port}) {{ $du = "sip:127.0.0.1:{target}"; }}
    t_relay();
}}
"""


async def start_kamailio(tmp_path: Path, port: int, target: int) -> asyncio.subprocess.Process:
    if not shutil.which("kamailio"):
        pytest.skip("kamailio is not installed (make test installs it)")
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(port=port, target=target))
    proc = await asyncio.create_subprocess_exec(
        "kamailio", "-DD", "-E", "-m", "64", "-M", "8", "-f", str(cfg), "-P", str(tmp_path / "kamailio.pid"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    # ready when its UDP listen socket exists (read from /proc, so the check never takes the port)
    await eventually(lambda: proc.returncode is not None or f"127.0.0.1:{port}" in _udp_listeners().split(),
                     timeout_s=5, what=f"kamailio listening on UDP {port}")
    if proc.returncode is not None:
        err = await proc.stderr.read() if proc.stderr else b""
        pytest.fail(f"kamailio exited: {err.decode(errors='replace')[-2000:]}")
    return proc


def _udp_listeners() -> str:
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    out = []
    for line in lines:
        local = line.split()[1]
        ip_hex, port_hex = local.split(":")
        if ip_hex == "0100007F":
            out.append(f"127.0.0.1:{int(port_hex, 16)}")
    return " ".join(out)


BYE_VIA_PROXY = """  <recv request="BYE">
    <action>
      <ereg regexp="Via: SIP/2.0/UDP 127.0.0.1:{port}" search_in="msg" check_it="true" assign_to="proxied"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      X-Proxied: [$proxied]
      Content-Length: 0

    ]]>
  </send>
"""


async def test_call_through_kamailio_record_route(endpoint, tmp_path: Path) -> None:
    kport = free_port()
    proc = await start_kamailio(tmp_path, kport, endpoint.port)
    calls: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        call = await incoming.accept()
        calls.append(call)
        await asyncio.wait_for(call.confirmed.wait(), 5)  # the ACK came through the proxy: now our BYE
        await call.hangup()

    endpoint.on_incoming = handler
    try:
        scenario = uac_scenario("PCMU", pause_ms=0, bye="remote")
        scenario = scenario.replace(
            scenario[scenario.index('  <recv request="BYE"'):scenario.index("</scenario>")],
            BYE_VIA_PROXY.format(port=kport),
        )
        result = await run_sipp(scenario, f"127.0.0.1:{kport}", tmp_path, free_port())
    finally:
        proc.terminate()
        await proc.wait()
    assert result.code == 0, str(result)
    assert calls and calls[0].dialog.route_set and f"127.0.0.1:{kport}" in calls[0].dialog.route_set[0]
    assert calls[0].end_reason == "local_bye"


async def test_we_dial_through_kamailio_as_outbound_proxy(endpoint, tmp_path: Path) -> None:
    from tests.sip.test_sipp_callee import assert_echo, echo_check

    kport = free_port()
    proc = await start_kamailio(tmp_path, kport, endpoint.port)
    sport = free_port()
    try:
        scenario = Path(__file__).parent / "scenarios" / "uas_record_route.xml"
        sipp = await sipp_server(scenario, tmp_path, sport, extra=["-rtp_echo"])
        out = await endpoint.invite(f"sip:callee@127.0.0.1:{sport}", proxy=f"sip:127.0.0.1:{kport}", timeout=10)
        call = await out.answered()
        assert call.dialog.route_set and f"127.0.0.1:{kport}" in call.dialog.route_set[0]
        pcm = await echo_check(call, 800.0)
        await call.hangup()
        result = await sipp
    finally:
        proc.terminate()
        await proc.wait()
    assert result.code == 0, str(result)
    assert_echo(pcm, 800.0)
