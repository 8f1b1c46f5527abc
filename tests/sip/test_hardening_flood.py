"""Issue 18, defect 5: flood protection in the endpoint. Per-source rate limit, a cap on concurrent
INVITE transactions per source, TCP idle / slow-message timeouts and connection caps (slowloris),
and no Server header by default. Attackers are raw sockets on 127.0.0.2..; a well-behaved OPTIONS
probe on 127.0.0.1 measures the round trip while each attack runs."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from parley.sip.call import IncomingCall
from tests.eventually import eventually
from tests.sip.attack import OptionsProbe, exchange, request, udp_socket

pytestmark = pytest.mark.realtime  # rates and timeouts on the wall clock: make test runs it in the foreground half


async def test_no_server_header_by_default_and_configurable(endpoint_factory) -> None:
    plain = await endpoint_factory()
    named = await endpoint_factory(server_header="Example-SBC")
    sock = udp_socket()
    src = sock.getsockname()[1]
    a = await asyncio.to_thread(exchange, sock, request("OPTIONS", plain.port, src_port=src), plain.port)
    b = await asyncio.to_thread(exchange, sock, request("OPTIONS", named.port, src_port=src), named.port)
    assert a is not None and b"\r\nServer:" not in a and b"Parley" not in a
    assert b is not None and b"\r\nServer: Example-SBC\r\n" in b
    sock.close()


async def test_per_source_rate_limit_drops_the_excess_and_spares_others(endpoint_factory) -> None:
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(requests_per_second=50, request_burst=50))
    probe = OptionsProbe(ep.port)
    probe.start()
    attacker = udp_socket("127.0.0.2", timeout=0.3)
    src = attacker.getsockname()[1]

    def flood() -> int:
        for _ in range(400):
            attacker.sendto(request("OPTIONS", ep.port, src_port=src), ("127.0.0.1", ep.port))
        answered = 0
        while True:
            try:
                attacker.recv(65535)
                answered += 1
            except socket.timeout:
                return answered

    t0 = time.monotonic()
    answered = await asyncio.to_thread(flood)
    elapsed = time.monotonic() - t0
    await eventually(lambda: len(probe.rtts) >= 20, timeout_s=10)
    probe.stop.set()
    await asyncio.to_thread(probe.join)
    attacker.close()
    assert answered <= 50 + 50 * elapsed + 5, (answered, elapsed)
    assert ep.transport.stats["rate_limited"] >= 400 - answered - 5
    assert max(probe.rtts) < 10, "the well-behaved source lost answers"
    assert probe.p99() < 0.5


async def test_a_trunks_addresses_skip_the_per_source_rate_limit(endpoint_factory) -> None:
    """A carrier sends many calls from a few addresses: the gateway exempts its trunks' addresses
    (IPs or CIDRs) from the per-source limits, without trusting their Via `received`."""
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(requests_per_second=5, request_burst=5))
    ep.transport.exempt_networks(["127.0.0.0/30"])
    assert ep.transport.exempt("127.0.0.2") and not ep.transport.exempt("127.0.0.9")
    carrier = udp_socket("127.0.0.2", timeout=2)
    src = carrier.getsockname()[1]

    def burst() -> int:
        answered = 0
        for _ in range(40):
            answered += exchange(carrier, request("OPTIONS", ep.port, src_port=src), ep.port) is not None
        return answered

    assert await asyncio.to_thread(burst) == 40
    assert ep.transport.stats["rate_limited"] == 0
    carrier.close()


async def test_a_trusted_network_is_given_as_a_cidr(endpoint_factory) -> None:
    """SIP_TRUSTED_SOURCES takes CIDRs (compose trusts Kamailio's network): such a source is not limited."""
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(requests_per_second=5, request_burst=5,
                                                 trusted_sources=frozenset({"127.0.0.0/30"})))
    proxy = udp_socket("127.0.0.3", timeout=2)
    src = proxy.getsockname()[1]
    answered = await asyncio.to_thread(
        lambda: sum(exchange(proxy, request("OPTIONS", ep.port, src_port=src), ep.port) is not None
                    for _ in range(40)))
    assert answered == 40 and ep.transport.stats["rate_limited"] == 0
    proxy.close()


async def test_concurrent_invites_per_source_are_capped(endpoint_factory) -> None:
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(invites_per_source=5))
    held = asyncio.Event()

    async def never_answers(incoming: IncomingCall) -> None:
        await held.wait()

    ep.on_incoming = never_answers
    attacker = udp_socket("127.0.0.2", timeout=1.0)
    src = attacker.getsockname()[1]

    def flood() -> dict[str, int]:
        for _ in range(20):
            attacker.sendto(request("INVITE", ep.port, src_port=src, call_id=os.urandom(6).hex()),
                            ("127.0.0.1", ep.port))
        got: dict[str, int] = {}
        while True:
            try:
                code = attacker.recv(65535).split(b" ", 2)[1].decode()
            except socket.timeout:
                return got
            got[code] = got.get(code, 0) + 1

    got = await asyncio.to_thread(flood)
    assert got.get("100") == 5 and got.get("503") == 15, got
    assert ep.transactions.invites_from("127.0.0.2") == 5
    # another source still gets through
    other = udp_socket("127.0.0.3")
    reply = await asyncio.to_thread(exchange, other, request("INVITE", ep.port, src_port=other.getsockname()[1]),
                                    ep.port)
    assert reply is not None and reply.startswith(b"SIP/2.0 100")
    held.set()
    attacker.close()
    other.close()


async def test_slowloris_connections_are_capped_and_closed(endpoint_factory) -> None:
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(tcp_max_connections=20, tcp_max_per_source=10,
                                                 tcp_message_timeout=0.5, tcp_idle_timeout=1.0))
    probe = OptionsProbe(ep.port)
    probe.start()
    socks: list[socket.socket] = []

    def open_slowly() -> None:
        for i in range(30):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.0.0.{2 + i % 3}", 0))
            s.connect(("127.0.0.1", ep.port))
            s.sendall(b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2;branch=z9hG4bK1\r\n")
            socks.append(s)

    await asyncio.to_thread(open_slowly)
    await eventually(lambda: ep.transport.stats["tcp_refused"] + ep.transport.tcp_connections >= 30, timeout_s=5)
    assert ep.transport.tcp_connections <= 20
    await eventually(lambda: ep.transport.tcp_connections == 0, timeout_s=5, what="slow connections closed")
    assert ep.transport.stats["tcp_timeouts"] >= 1
    # an idle connection (no bytes at all) is closed too
    idle = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", ep.port))
    await eventually(lambda: ep.transport.tcp_connections == 1, timeout_s=2)
    await eventually(lambda: ep.transport.tcp_connections == 0, timeout_s=5, what="idle connection closed")
    probe.stop.set()
    await asyncio.to_thread(probe.join)
    for s in [*socks, idle]:
        s.close()
    assert probe.p99() < 0.5


async def test_answered_invites_do_not_count_against_the_source_cap(endpoint_factory) -> None:
    """A busy trunk: INVITEs already answered (still in Timer H/L) leave room for new ones."""
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(invites_per_source=2))

    async def busy(incoming: IncomingCall) -> None:
        await incoming.reject(486)

    ep.on_incoming = busy
    sock = udp_socket("127.0.0.2", timeout=2.0)
    src = sock.getsockname()[1]
    for _ in range(6):
        call_id = os.urandom(6).hex()
        sock.sendto(request("INVITE", ep.port, src_port=src, call_id=call_id), ("127.0.0.1", ep.port))

        def final() -> bytes:
            while True:
                data = sock.recv(65535)
                if call_id.encode() in data and not data.startswith(b"SIP/2.0 1"):
                    return data
        assert (await asyncio.to_thread(final)).startswith(b"SIP/2.0 486")
    assert ep.transactions.invites >= 6 and ep.transactions.invites_from("127.0.0.2") == 0
    sock.close()


async def test_a_connection_that_carried_messages_may_idle_longer(endpoint_factory) -> None:
    """A quiet call's TCP flow is not cut at the stranger's idle timeout, only at the session one."""
    from parley.sip.guard import SipLimits

    ep = await endpoint_factory(limits=SipLimits(tcp_idle_timeout=0.3, tcp_session_idle_timeout=1.5))
    conn = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", ep.port))
    src = conn.getsockname()[1]
    conn.sendall(request("OPTIONS", ep.port, src_port=src, transport="TCP"))
    conn.settimeout(2)
    assert (await asyncio.to_thread(conn.recv, 65535)).startswith(b"SIP/2.0 200")
    await asyncio.sleep(0.8)
    assert ep.transport.tcp_connections == 1
    await eventually(lambda: ep.transport.tcp_connections == 0, timeout_s=5, what="session idle timeout")
    conn.close()
