"""Issue 18, defects 1, 2 and 11: a datagram with Unicode digits is a 400 and one log line (and a
flood of them leaves the loop responsive); responses go to the packet's real source, never to a
forged Via `received=` or a name to resolve; a caller without Contact gets its BYE at its source
address, never at its From host. The attacker is a raw socket on another loopback address."""

from __future__ import annotations

import asyncio
import socket

import pytest
from structlog.testing import capture_logs

from parley.sip.call import Call, IncomingCall
from parley.sip.errors import SipParseError
from parley.sip.message import parse_message
from tests.eventually import eventually
from tests.sip.attack import OptionsProbe, exchange, request, udp_socket


@pytest.mark.parametrize("field", ["content_length", "cseq"])
def test_unicode_digits_are_a_parse_error(field: str) -> None:
    kw = {"content_length": "²"} if field == "content_length" else {"cseq": "٣ OPTIONS"}
    data = request("OPTIONS", 5060, src_port=5062, **kw)  # type: ignore[arg-type]
    with pytest.raises(SipParseError):
        parse_message(data).validate()


async def test_unicode_content_length_gets_400_one_line_and_a_flood_does_not_stall(endpoint) -> None:
    attacker = udp_socket("127.0.0.2")
    src = attacker.getsockname()[1]
    with capture_logs() as logs:
        reply = await asyncio.to_thread(
            exchange, attacker, request("INVITE", endpoint.port, src_port=src, content_length="²"), endpoint.port)
        assert reply is not None and reply.startswith(b"SIP/2.0 400 "), reply
        probe = OptionsProbe(endpoint.port)
        probe.start()

        def flood() -> None:
            for i in range(300):
                attacker.sendto(request("INVITE", endpoint.port, src_port=src, content_length="²",
                                        cseq="1 INVITE" if i % 2 else "¹ INVITE"), ("127.0.0.1", endpoint.port))

        await asyncio.to_thread(flood)
        await eventually(lambda: len(probe.rtts) >= 20, timeout_s=10, what="OPTIONS answered during the flood")
        probe.stop.set()
        await asyncio.to_thread(probe.join)
    attacker.close()
    lines = [e for e in logs if e.get("peer", ("",))[0] == "127.0.0.2" or e.get("peer") == "127.0.0.2"]
    assert not any(e.get("exc_info") for e in logs), "a traceback was logged"
    assert len(lines) <= endpoint.limits.log_burst + 1, [e["event"] for e in lines]
    assert all(e["log_level"] != "error" for e in lines)
    assert probe.p99() < 0.5, f"OPTIONS p99 {probe.p99():.3f}s during the flood"


async def test_forged_received_does_not_redirect_the_response(endpoint) -> None:
    bystander = udp_socket("127.0.0.2", timeout=0.5)  # where a forged received= would send it
    attacker = udp_socket("127.0.0.1")
    src = attacker.getsockname()[1]
    bystander_port = bystander.getsockname()[1]
    data = request("OPTIONS", endpoint.port, src_port=bystander_port,
                   via_extra=f";received=127.0.0.2;rport={bystander_port}")
    reply = await asyncio.to_thread(exchange, attacker, data, endpoint.port)
    assert src != bystander_port or True
    assert reply is not None and reply.startswith(b"SIP/2.0 200"), "the response did not come back to the source"
    with pytest.raises(socket.timeout):
        await asyncio.to_thread(bystander.recv, 65535)
    bystander.close()
    attacker.close()


async def test_a_name_in_via_is_not_resolved_and_the_answer_goes_to_the_source(endpoint) -> None:
    attacker = udp_socket("127.0.0.2")
    src = attacker.getsockname()[1]
    data = request("OPTIONS", endpoint.port, src_port=src, via_host="resolve-me.example.net")
    reply = await asyncio.to_thread(exchange, attacker, data, endpoint.port)
    assert reply is not None and reply.startswith(b"SIP/2.0 200")
    assert endpoint.transport.resolver.lookups == 0
    attacker.close()


async def test_caller_without_contact_gets_its_bye_at_its_source(endpoint) -> None:
    """RFC 2543-style INVITE (no Contact): our BYE goes to where the INVITE came from."""
    answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def handler(incoming: IncomingCall) -> None:
        answered.set_result(await incoming.accept())

    endpoint.on_incoming = handler
    caller = udp_socket("127.0.0.2", timeout=3)
    src = caller.getsockname()[1]
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
           b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    invite = request("INVITE", endpoint.port, src_port=src, call_id="nocontact-1",
                     headers="Content-Type: application/sdp", body=sdp)
    invite = invite.replace(b"From: <sip:attacker@127.0.0.1:", b"From: <sip:attacker@from-host.example.net:")

    def until_final() -> bytes:
        caller.sendto(invite, ("127.0.0.1", endpoint.port))
        while True:
            data = caller.recv(65535)
            if data.startswith(b"SIP/2.0 200"):
                return data
    ok = await asyncio.to_thread(until_final)
    call = await asyncio.wait_for(answered, 5)
    assert call.dialog.remote_target.host == "127.0.0.2" and call.dialog.remote_target.port == src
    ack = request("ACK", endpoint.port, src_port=src, call_id="nocontact-1", cseq="1 ACK")
    to_line = next(line for line in ok.split(b"\r\n") if line.lower().startswith(b"to:"))
    ack = ack.replace(next(line for line in ack.split(b"\r\n") if line.startswith(b"To:")), to_line)
    caller.sendto(ack, ("127.0.0.1", endpoint.port))
    hangup = asyncio.ensure_future(call.hangup())

    def bye() -> bytes:
        while True:
            data = caller.recv(65535)
            if data.startswith(b"BYE "):
                return data
    got = await asyncio.to_thread(bye)
    assert got.startswith(b"BYE sip:attacker@127.0.0.2:")
    assert endpoint.transport.resolver.lookups == 0
    hangup.cancel()
    caller.close()


@pytest.mark.parametrize("data", [
    b"SIP/2.0 2001 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",  # was read as 200
    b"SIP/2.0 200OK\r\n\r\n",
    b"OPTIONS sip:a@b:5\xc2\xb2 SIP/2.0\r\n\r\n",  # a Unicode digit in a port
])
def test_numbers_in_start_lines_are_ascii_and_exact(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data)


def test_unicode_digits_elsewhere_are_parse_errors() -> None:
    for header in ("Max-Forwards: ٧٠", "Expires: ³", "Via: SIP/2.0/UDP 127.0.0.1:5٠6٠;branch=z9hG4bK2"):
        data = request("OPTIONS", 5060, src_port=5062, headers=header)
        with pytest.raises(SipParseError):
            parse_message(data).validate()
