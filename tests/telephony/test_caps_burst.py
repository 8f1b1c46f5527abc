"""Caps hold under a burst (issue 18, defect 3; issue 15, cluster-wide caps).

The attacker is a raw UDP socket firing INVITEs back to back, before any answer can come. Before the fix the
capacity check and the slot's reservation had awaits between them: 30 INVITEs against a cap of 4 were
30/30 answered. Now exactly the cap is answered 200 and the rest 503/486 — on one worker, and across two
workers sharing Redis. Answered INVITEs that are never ACKed give their slot back at Timer H, and are counted.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from parley.calls import metrics
from parley.calls.slots import CallSlots, RedisSlots
from parley.sip.transaction import SipTimers
from tests.eventually import eventually

pytestmark = [pytest.mark.sip]

SDP = ("v=0\r\no=burst 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def invite(target: int, local: int, call_id: str, n: int) -> bytes:
    body = SDP.format(port=40000 + 2 * n)
    return (f"INVITE sip:+4930123456@127.0.0.1:{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
            f"From: <sip:4711@127.0.0.1:{local}>;tag={n}x\r\n"
            f"To: <sip:+4930123456@127.0.0.1:{target}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:4711@127.0.0.1:{local}>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


class Burst:
    """A UDP socket sending INVITEs and collecting each Call-ID's final status (never ACKing)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.finals: dict[str, int] = {}

    def fire(self, targets: list[int], count: int) -> list[str]:
        ids = []
        for n in range(count):
            call_id = f"burst-{uuid.uuid4().hex}"
            ids.append(call_id)
            self.sock.sendto(invite(targets[n % len(targets)], self.port, call_id, n),
                             ("127.0.0.1", targets[n % len(targets)]))
        return ids

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            text = data.decode(errors="replace")
            if not text.startswith("SIP/2.0 "):
                continue
            status = int(text[8:11])
            call_id = next((line.split(":", 1)[1].strip() for line in text.split("\r\n")
                            if line.lower().startswith("call-id:")), "")
            if status >= 200 and "INVITE" in next((l for l in text.split("\r\n") if l.startswith("CSeq")), ""):
                self.finals.setdefault(call_id, status)

    async def wait_finals(self, ids: list[str], timeout_s: float = 20.0) -> dict[str, int]:
        def done() -> bool:
            self.drain()
            return all(i in self.finals for i in ids)

        await eventually(done, timeout_s=timeout_s, what=f"a final answer to each of {len(ids)} INVITEs "
                                                         f"(got {len(self.finals)})")
        return {i: self.finals[i] for i in ids}

    def close(self) -> None:
        self.sock.close()


async def test_burst_of_30_invites_against_cap_4_admits_exactly_4_and_unacked_slots_come_back(phone_stack) -> None:
    # T1 = 100 ms (a loopback round trip is far shorter): the un-ACKed 2xx is given up after 64*T1 = 6.4 s
    stack = await phone_stack(num_agents=4, sip_timers=SipTimers(t1=0.1))
    burst = Burst()
    unacked_before = metrics.SIP_UNACKED._value.get()
    try:
        ids = burst.fire([stack.sip_port], 30)
        finals = await burst.wait_finals(ids)
        codes = sorted(finals.values())
        assert codes.count(200) == 4, codes
        assert codes.count(503) == 26, codes
        assert stack.gateway.slots.live == 4
        # nobody ACKs: at 64*T1 the four slots come back, each counted and recorded
        answered = [i for i, c in finals.items() if c == 200]

        async def released() -> bool:
            return stack.gateway.slots.live == 0 and not stack.gateway.live

        await eventually(released, timeout_s=20, interval_s=0.2, what="the un-ACKed calls' slots released")
        assert stack.gateway.slots.unacked == 4
        assert metrics.SIP_UNACKED._value.get() - unacked_before == 4
        for sip_id in answered:
            call = await stack.calls.store.get_by_sip_call_id(sip_id)
            assert call is not None and call.status == "failed" and "no ACK" in (call.end_reason or "")
        # and the next burst is admitted again, up to the cap
        again = burst.fire([stack.sip_port], 6)
        codes = sorted((await burst.wait_finals(again)).values())
        assert codes.count(200) == 4 and codes.count(503) == 2, codes
    finally:
        burst.close()


async def test_agent_cap_holds_under_a_burst(phone_stack, tmp_path) -> None:
    import yaml

    from parley.agents import AgentRegistry
    from tests.conftest import ROOT

    folder = tmp_path / "agents"
    folder.mkdir()
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec["max_concurrent_calls"] = 2
    (folder / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    stack = await phone_stack(num_agents=10)
    stack.gateway.agents = AgentRegistry.load(folder, ROOT / "prompts")
    burst = Burst()
    try:
        ids = burst.fire([stack.sip_port], 12)
        codes = sorted((await burst.wait_finals(ids)).values())
        assert codes.count(200) == 2 and codes.count(486) == 10, codes
    finally:
        burst.close()


async def test_cluster_cap_of_3_across_two_workers_sharing_redis(phone_stack, redis_url: str,
                                                                  redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    clients = [aioredis.Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    try:
        stacks = []
        for n, client in enumerate(clients):
            slots = CallSlots(4, shared=RedisSlots(client, worker=f"w{n}", prefix=redis_prefix, lease_s=30))
            stacks.append(await phone_stack(num_agents=4, max_concurrent_calls=3, slots=slots, worker_id=f"w{n}"))
        burst = Burst()
        try:
            ids = burst.fire([s.sip_port for s in stacks], 20)
            codes = sorted((await burst.wait_finals(ids)).values())
            assert codes.count(200) == 3 and codes.count(503) == 17, codes
            assert sum(s.gateway.slots.live for s in stacks) == 3
            assert await stacks[0].gateway.slots.shared.count("cluster") == 3  # type: ignore[union-attr]
        finally:
            burst.close()
        # every admitted record names the worker that ran it
        workers = set()
        for s in stacks:
            calls, _ = await s.calls.list_calls(limit=50)
            workers |= {c.worker for c in calls}
        assert workers <= {"w0", "w1"} and workers
    finally:
        for client in clients:
            await client.aclose()


async def test_expired_slot_leases_free_a_dead_workers_slots(redis_url: str, redis_prefix: str) -> None:
    """A worker that stops renewing (killed) loses its slots when the lease runs out."""
    import redis.asyncio as aioredis

    from parley.calls.slots import Claim

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        dead = RedisSlots(client, worker="dead", prefix=redis_prefix, lease_s=0.5)
        alive = RedisSlots(client, worker="alive", prefix=redis_prefix, lease_s=30)
        cap = [Claim("cluster", 2, 503, "full")]
        assert await dead.reserve("a", cap) is None and await dead.reserve("b", cap) is None
        assert await alive.reserve("c", cap) == cap[0]  # full while the leases run
        await asyncio.sleep(0.6)  # the dead worker renews nothing
        assert await alive.reserve("c", cap) is None
        assert await alive.count("cluster") == 1
        # the live worker's renewals keep its slots
        await alive.renew()
        assert await alive.count("cluster") == 1
    finally:
        await client.aclose()


async def test_an_inbound_reservation_and_its_start_count_are_one_round_trip(redis_url: str,
                                                                             redis_prefix: str) -> None:
    """`reserve_and_note`: the claims and the calls-per-second window in one script; a refused call is
    not counted as a start."""
    import redis.asyncio as aioredis

    from parley.calls.slots import Claim

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        slots = RedisSlots(client, worker="w", prefix=redis_prefix, lease_s=30)
        cap = [Claim("cluster", 2, 503, "full"), Claim("agent:bench", 5, 486, "agent full")]
        commands: list[str] = []
        real = client.execute_command

        async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            commands.append(str(args[0]))
            return await real(*args, **kwargs)

        client.execute_command = counted  # type: ignore[method-assign]
        assert await slots.reserve_and_note("a", cap, "global") is None
        assert commands in (["EVALSHA"], ["EVALSHA", "EVAL"], ["EVALSHA", "SCRIPT LOAD", "EVALSHA"])
        assert await slots.reserve_and_note("b", cap, "global") is None
        assert await slots.reserve_and_note("c", cap, "global") == cap[0]  # full: refused, not counted
        window = f"{redis_prefix}slots:cps:global"
        assert await client.zcard(window) == 2
        assert await slots.count("cluster") == 2 and await slots.count("agent:bench") == 2
        assert 0 < await client.pttl(window) <= 2000
        await slots.release("a")
        assert await slots.count("cluster") == 1
    finally:
        await client.aclose()
