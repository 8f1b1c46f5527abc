"""A fuzz test in the suite: a few thousand mutated SIP messages (RFC 4475 seeds, Hypothesis-chosen
mutations) through the parser and the transport's receive path (400 building included) with no
exception but SipParseError; and a few hundred through a live endpoint over UDP and TCP, which keeps
answering and counts no crash. bench/fuzz runs the same at scale."""

from __future__ import annotations

import asyncio
import random
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz.mutate import mutate
from parley.sip.errors import SipParseError
from parley.sip.message import parse_message
from parley.sip.transport import Source, TransportLayer
from tests.sip.attack import exchange, request, udp_socket
from tests.sip.rfc4475.messages import MESSAGES

SEEDS = [m[2] for m in MESSAGES]


@given(st.sampled_from(SEEDS), st.integers(0, 2**32 - 1), st.booleans())
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_messages_only_raise_parse_errors(seed: bytes, rnd_seed: int, stream: bool) -> None:
    data = mutate(seed, random.Random(rnd_seed))
    try:
        msg = parse_message(data, stream=stream)
        msg.validate()
        for accessor in ("cseq", "from_", "to", "vias", "contact", "content_type"):
            getattr(msg, accessor)
    except SipParseError:
        pass


def test_receive_path_never_crashes() -> None:
    """TransportLayer.received (parse, validate, Via stamping, 400 building) on 3,000 mutations."""
    seen: list[object] = []
    layer = TransportLayer("127.0.0.1", 0, ("udp",), lambda msg, src: seen.append(msg))
    rnd = random.Random(18)
    for i in range(3000):
        layer.received(mutate(rnd.choice(SEEDS), rnd), Source("udp", (f"127.0.0.{i % 250 + 1}", 5060)), stream=False)
    assert layer.stats["crashes"] == 0 and layer.stats["handler_errors"] == 0
    assert layer.stats["malformed"] > 1000 and seen  # both paths were exercised


async def test_live_endpoint_survives_mutated_traffic(endpoint) -> None:
    rnd = random.Random(4475)
    payloads = [mutate(rnd.choice(SEEDS), rnd) for _ in range(600)]

    def blast() -> None:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.2", 0))
        for p in payloads[:400]:
            u.sendto(p[:65000], ("127.0.0.1", endpoint.port))
        u.close()
        for p in payloads[400:]:
            with socket.create_connection(("127.0.0.1", endpoint.port), timeout=2) as t:
                t.sendall(p)

    await asyncio.to_thread(blast)
    sock = udp_socket()
    reply = await asyncio.to_thread(exchange, sock, request("OPTIONS", endpoint.port, src_port=sock.getsockname()[1]),
                                    endpoint.port)
    sock.close()
    assert reply is not None and reply.startswith(b"SIP/2.0 200")
    stats = endpoint.transport.stats
    assert stats["crashes"] == 0 and stats["handler_errors"] == 0, stats


def test_long_runs_of_blanks_parse_in_linear_time() -> None:
    """A start line or header of 8,000 blanks (found by bench/fuzz: a backtracking pattern took 36 s
    for 3,000) is rejected in well under a second, by the parser and by the 400 builder alike."""
    import time

    layer = TransportLayer("127.0.0.1", 0, ("udp",), lambda msg, src: None)
    for data in (b"INVITE " + b" " * 8000 + b"x\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\n\r\n",
                 b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h" + b" \t" * 4000 + b";branch=1\r\n\r\n",
                 b"INVITE \t" * 1000 + b"SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",
                 b"OPTIONS sip:a@b SIP/2.0\r\nl" + b" " * 8000 + b":1\r\n\r\n"):
        t0 = time.perf_counter()
        layer.received(data, Source("udp", ("127.0.0.9", 5060)), stream=False)
        try:
            parse_message(data, stream=True).validate()
        except SipParseError:
            pass
        assert time.perf_counter() - t0 < 0.5, data[:40]
    assert layer.stats["crashes"] == 0
