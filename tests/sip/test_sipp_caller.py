"""SIPp calls our endpoint: codecs and media, DTMF, CANCEL, BYE both ways, retransmissions, auth."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from parley.media.g711 import ulaw_encode
from parley.sip.call import Call, IncomingCall
from parley.sip.endpoint import SipEndpoint
from tests.conftest import free_port
from tests.eventually import eventually
from tests.sip.conftest import dominant_frequency, rms, tone
from tests.sip.sipp import (
    _HEAD, cancel_scenario, info_dtmf, out_of_dialog, play_pcap, refer, reinvite, retransmit_scenario, rtp_stream, run_sipp, uac_scenario,
)

pytestmark = [pytest.mark.sip]


def target(ep: SipEndpoint) -> str:
    return f"127.0.0.1:{ep.port}"


async def record(call: Call, frames: list[np.ndarray]) -> None:
    while True:
        frame = await call.rtp.read_frame()
        if frame is None:
            return
        frames.append(frame)


async def test_pcmu_call_with_raw_ulaw_media_reaches_us_as_a_tone(endpoint, tmp_path: Path) -> None:
    ulaw = tmp_path / "tone.ulaw"
    ulaw.write_bytes(ulaw_encode(tone(440, 1.5)))
    frames: list[np.ndarray] = []
    answered: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        await incoming.ring()
        call = await incoming.accept()
        answered.append(call)
        await record(call, frames)

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMU", actions=rtp_stream(ulaw, 0), pause_ms=2000)
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert answered and await asyncio.wait_for(answered[0].wait_ended(), 5) == "remote_bye"
    assert answered[0].negotiated.codec == "PCMU"
    pcm = np.concatenate(frames)
    loud = pcm[np.abs(pcm) > 1000]
    assert len(loud) > 4000, "less than half a second of the tone arrived"
    start = int(np.argmax(np.abs(pcm) > 1000))
    assert abs(dominant_frequency(pcm[start:start + 8000]) - 440) < 15


async def test_pcma_call_with_pcap_media_and_our_bye(endpoint, tmp_path: Path) -> None:
    """SIPp plays the PCMA sample pcap; we hear speech energy and hang up ourselves."""
    frames: list[np.ndarray] = []
    answered: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        call = await incoming.accept()
        answered.append(call)
        recorder = asyncio.ensure_future(record(call, frames))
        await asyncio.sleep(1.5)  # the scenario: listen to 1.5 s of the pcap, then hang up ourselves
        await call.hangup()
        await recorder

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMA", actions=play_pcap("g711a.pcap"), pause_ms=0, bye="remote")
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert answered[0].negotiated.codec == "PCMA"
    assert answered[0].end_reason == "local_bye"
    pcm = np.concatenate(frames)
    assert rms(pcm) > 300, "no audible audio from the pcap arrived"


async def test_dtmf_from_rfc4733_pcap_and_sip_info(endpoint, tmp_path: Path) -> None:
    digits: list[str] = []

    async def handler(incoming: IncomingCall) -> None:
        call = await incoming.accept()
        async for digit in call.dtmf_events():
            digits.append(digit)

    endpoint.on_incoming = handler
    # INFO with a digit, then with an event code (Signal=11 is "#", RFC 4733 numbering)
    after = '  <pause milliseconds="500"/>\n' + info_dtmf(3, "5") + info_dtmf(4, "11")
    scenario = uac_scenario("PCMU", actions=play_pcap("dtmf_2833_1.pcap"), pause_ms=600, after_answer=after)
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    await eventually(lambda: len(digits) >= 3, timeout_s=5, what="three digits received")
    assert digits == ["1", "5", "#"]


async def test_cancel_before_answer(endpoint, tmp_path: Path) -> None:
    seen: list[IncomingCall] = []

    async def handler(incoming: IncomingCall) -> None:
        seen.append(incoming)
        await incoming.ring()
        await asyncio.wait_for(incoming.cancelled.wait(), 10)

    endpoint.on_incoming = handler
    result = await run_sipp(cancel_scenario(), target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert seen and seen[0].cancelled.is_set()
    assert not endpoint.calls


async def test_retransmitted_invite_is_absorbed(endpoint, tmp_path: Path) -> None:
    handled: list[IncomingCall] = []

    async def handler(incoming: IncomingCall) -> None:
        handled.append(incoming)
        await asyncio.sleep(0.4)  # the retransmission arrives while we think
        await incoming.ring()
        await incoming.accept()

    endpoint.on_incoming = handler
    result = await run_sipp(retransmit_scenario(), target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert len(handled) == 1


@pytest.mark.parametrize(("password", "proxy", "expect"), [
    ("secret", False, 200), ("wrong", False, 403), ("secret", True, 200),
])
async def test_digest_challenge(endpoint, tmp_path: Path, password: str, proxy: bool, expect: int) -> None:
    users: list[str | None] = []

    async def handler(incoming: IncomingCall) -> None:
        user = await incoming.check_auth("parley.test", {"alice": "secret"}.get, proxy=proxy)
        users.append(user)
        if user is not None:
            await incoming.accept()

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMU", auth=True, expect=expect, pause_ms=200)
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port(),
                            extra=["-au", "alice", "-ap", password])
    assert result.code == 0, str(result)
    assert users[0] is None  # first INVITE: challenged
    assert users[-1] == ("alice" if expect == 200 else None)


async def test_no_common_codec_is_answered_488(endpoint, tmp_path: Path) -> None:
    called: list[IncomingCall] = []

    async def handler(incoming: IncomingCall) -> None:
        called.append(incoming)

    endpoint.on_incoming = handler
    result = await run_sipp(uac_scenario("G729", expect=488), target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert not called


async def test_hold_resume_and_refer_received_over_tcp(endpoint, tmp_path: Path) -> None:
    holds: list[bool] = []
    refers: list[str] = []
    answered: list[Call] = []

    async def on_refer(target_uri: str) -> bool:
        refers.append(target_uri)
        return True

    async def handler(incoming: IncomingCall) -> None:
        assert incoming.transport == "tcp"
        call = await incoming.accept()
        call.on_hold_change = holds.append
        call.on_refer = on_refer
        answered.append(call)

    endpoint.on_incoming = handler
    after = reinvite(3, "sendonly") + reinvite(4, "sendrecv") + refer(5, "sip:bob@127.0.0.1:5999")
    scenario = uac_scenario("PCMU", pause_ms=200, after_answer=after)
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port(), extra=["-t", "t1"])
    assert result.code == 0, str(result)
    assert holds == [True, False]
    assert refers == ["sip:bob@127.0.0.1:5999"]
    assert answered[0].end_reason == "remote_bye"


async def test_garbage_gets_400_or_is_dropped_and_a_good_call_still_works(endpoint, tmp_path: Path) -> None:
    import socket

    garbage = [
        b"\x00\xff" * 300,
        b"INVITE sip:x@y SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnothing\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
        b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKg1;rport\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: g1\r\nCSeq: x INVITE\r\n\r\n",
        b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKg2;rport\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: g2\r\nCSeq: 1 INVITE\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: 9\r\n\r\nnot sdp!!",
        b"\r\n\r\n",
    ]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(2)
    for data in garbage:
        udp.sendto(data, ("127.0.0.1", endpoint.port))
    def collect() -> list[str]:
        replies = []
        try:
            while len(replies) < 2:
                replies.append(udp.recv(65535).decode())
        except TimeoutError:
            pass
        return replies

    replies = await asyncio.to_thread(collect)
    udp.close()
    assert any(r.startswith("SIP/2.0 400 Bad Request (bad CSeq") for r in replies), replies
    assert any(r.startswith("SIP/2.0 400 Bad Request (SDP") for r in replies), replies
    # a TCP frame without Content-Length closes that connection only
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKt\r\n\r\n")
    await writer.drain()
    # no answer (it has no From/To/Call-ID/CSeq to answer with), and the connection is closed on us
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert reader.at_eof()
    writer.close()

    answered: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        answered.append(await incoming.accept())

    endpoint.on_incoming = handler
    result = await run_sipp(uac_scenario("PCMU", pause_ms=200), target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert answered and endpoint.transport.stats["malformed"] >= 4


async def test_options_ping_and_unsupported_methods(endpoint, tmp_path: Path) -> None:
    scenario = (_HEAD.format(name="pings") + out_of_dialog("OPTIONS", 200, check="Allow:.*INVITE.*REFER")
                + out_of_dialog("PUBLISH", 405, check="Allow:") + out_of_dialog("BYE", 481) + "</scenario>\n")
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)


async def test_caller_behind_nat_gets_responses_and_our_bye_at_its_real_address(endpoint, tmp_path: Path) -> None:
    """SIPp claims a private address in Via, Contact and SDP (as a phone behind NAT would); answers
    must go to where its packets come from (rport, RFC 3581), and so must our BYE."""
    calls: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        call = await incoming.accept()
        calls.append(call)
        await asyncio.wait_for(call.confirmed.wait(), 5)  # SIPp's ACK arrived: now our BYE
        await call.hangup()

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMU", pause_ms=0, bye="remote")
    scenario = scenario.replace("Via: SIP/2.0/[transport] [local_ip]:[local_port];", "Via: SIP/2.0/[transport] 192.168.1.50:5060;")
    scenario = scenario.replace("Contact: <sip:4711@[local_ip]:[local_port];transport=[transport]>",
                                "Contact: <sip:4711@192.168.1.50:5060>")
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert calls and calls[0].end_reason == "local_bye"
    assert str(calls[0].dialog.remote_target) == "sip:4711@192.168.1.50:5060"


async def test_200_is_retransmitted_until_the_late_ack_arrives(endpoint, tmp_path: Path) -> None:
    calls: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        calls.append(await incoming.accept())

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMU", pause_ms=300)
    ack_at = scenario.index("      ACK [next_url]")
    send_at = scenario.rindex("  <send", 0, ack_at)
    scenario = scenario[:send_at] + '  <pause milliseconds="1700"/>\n' + scenario[send_at:]  # hold the ACK back
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    row = next(line for line in result.stdout.splitlines() if "200 <----------" in line)
    messages, retransmissions = (int(n) for n in re.findall(r"\s(\d+)", row.split("<----------")[1])[:2])
    assert messages == 1 and retransmissions >= 2, row  # our 200 came again at T1 and 2*T1 before the ACK
    assert calls[0].confirmed.is_set() and calls[0].end_reason == "remote_bye"


async def test_late_offer_invite_without_sdp_is_answered_in_the_ack(endpoint, tmp_path: Path) -> None:
    """An INVITE without SDP: we offer in the 200 and take SIPp's answer from the ACK (RFC 3261 §13.2.1)."""
    calls: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        assert incoming.offer is None
        calls.append(await incoming.accept())

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMA", pause_ms=400)
    invite_body = scenario[scenario.index("      Content-Type: application/sdp"):scenario.index("    ]]>")]
    scenario = scenario.replace(invite_body, "      Content-Length: 0\n\n", 1)
    answer = ("v=0\no=sipp 1 1 IN IP4 [local_ip]\ns=-\nc=IN IP4 [media_ip]\nt=0 0\n"
              "m=audio [media_port] RTP/AVP 8\na=rtpmap:8 PCMA/8000\n")
    ack_start = scenario.index("      ACK [next_url]")
    ack_end = scenario.index("      Content-Length: [len]", ack_start)
    scenario = (scenario[:ack_end] + "      Content-Type: application/sdp\n      Content-Length: [len]\n\n"
                + "".join(f"      {line}\n" for line in answer.strip().split("\n"))
                + scenario[ack_end + len("      Content-Length: [len]\n"):])
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    call = calls[0]
    assert call.confirmed.is_set()
    assert call.negotiated.codec == "PCMA" and call.negotiated.remote is not None
    assert call.rtp.codec.name == "PCMA"
