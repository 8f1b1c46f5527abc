"""RFC 4475 torture messages against Parley's UA over real UDP: each gets the verdict of the table
in messages.py (status code, reaches the application, or dropped), and the UA keeps serving."""

from __future__ import annotations

import asyncio
import socket

import pytest

from parley.sip.call import IncomingCall
from parley.sip.errors import SipParseError
from parley.sip.message import SipResponse, parse_message
from tests.sip.attack import exchange, request, udp_socket
from tests.sip.rfc4475.messages import MESSAGES


def parser_verdict(data: bytes) -> str:
    try:
        msg = parse_message(data)
        msg.validate()
    except SipParseError as exc:
        return f"SipParseError({exc.status})"
    return "response" if isinstance(msg, SipResponse) else "request"


@pytest.mark.parametrize(("name", "section", "data", "verdict"), MESSAGES, ids=[m[0] for m in MESSAGES])
async def test_torture_message_verdict(endpoint, name: str, section: str, data: bytes, verdict: int | str) -> None:
    reached: list[str] = []

    async def handler(incoming: IncomingCall) -> None:
        reached.append(incoming.call_id)
        await incoming.reject(486)

    endpoint.on_incoming = handler
    sock = udp_socket("127.0.0.2", timeout=0.5 if verdict == "dropped" else 2.0)
    reply = await asyncio.to_thread(exchange, sock, data, endpoint.port)
    if verdict == "dropped":
        assert reply is None, reply
    elif verdict == "handled":
        while reply is not None and reply.startswith(b"SIP/2.0 100"):
            reply = await asyncio.to_thread(sock.recv, 65535)
        assert reply is not None and reply.startswith(b"SIP/2.0 486"), (name, reply)
        assert reached, "the valid INVITE did not reach the application"
    else:
        assert reply is not None, f"{name}: no answer, expected {verdict}"
        status = int(reply.split(b" ", 2)[1])
        assert status == verdict, (name, reply[:200])
        assert not reached, f"{name} reached the application"
    # and the UA still answers a plain OPTIONS
    src = sock.getsockname()[1]
    sock.settimeout(2.0)
    ok = await asyncio.to_thread(exchange, sock, request("OPTIONS", endpoint.port, src_port=src), endpoint.port)
    while ok is not None and b"OPTIONS" not in ok.split(b"\r\n\r\n")[0].split(b"CSeq")[-1][:40]:
        ok = await asyncio.to_thread(sock.recv, 65535)
    assert ok is not None and ok.startswith(b"SIP/2.0 200")
    sock.close()


def test_verdict_table_is_complete() -> None:
    """Every message of the table parses or fails the way its verdict implies (printed for the docs)."""
    rows = []
    for name, section, data, verdict in MESSAGES:
        got = parser_verdict(data)
        rows.append(f"{section:9} {name:11} parser={got:20} UA={verdict}")
        if verdict in (400, 505):
            assert got.startswith("SipParseError"), (name, got)
        elif verdict == "handled" or (isinstance(verdict, int) and verdict not in (400, 505)):
            assert got == "request", (name, got)
    print("\n".join(rows))
