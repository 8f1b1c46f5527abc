"""Issue 18, defect 4: digest answers are bound to their Request-URI, nonce, nc and source; stale
nonces get stale=true; repeated failures are slowed down, then blocked (logged once). The attacker is
a raw UDP socket; the digest is computed as any phone would."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from structlog.testing import capture_logs

from parley.sip.auth import Credentials, answer_challenge
from parley.sip.call import IncomingCall
from tests.sip.attack import request, udp_socket

REALM = "parley"
PASSWORDS = {"alice": "s3cret"}


def final_for(sock: socket.socket, call_id: str, timeout: float = 5.0) -> bytes:
    """The first final response for `call_id` (ACKing nothing: tests use fresh branches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except socket.timeout:
            break
        if f"Call-ID: {call_id}".encode() in data and not data.startswith(b"SIP/2.0 1"):
            return data
    raise AssertionError(f"no final response for {call_id}")


def header(data: bytes, name: str) -> str:
    for line in data.decode(errors="replace").split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in {data[:300]!r}")


class Phone:
    """A caller at `ip` that INVITEs the endpoint and answers challenges with `password`."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = udp_socket(ip)
        self.src = self.sock.getsockname()[1]
        self.port = port

    def invite(self, user: str = "100", auth: str | None = None) -> tuple[bytes, str]:
        call_id = os.urandom(6).hex()
        uri = f"sip:{user}@127.0.0.1:{self.port}"
        extra = f"Authorization: {auth}" if auth else ""
        self.sock.sendto(request("INVITE", self.port, src_port=self.src, call_id=call_id, uri=uri, headers=extra),
                         ("127.0.0.1", self.port))
        return final_for(self.sock, call_id), uri

    def challenge_and_answer(self, username: str, password: str, user: str = "100") -> tuple[str, bytes]:
        first, uri = self.invite(user)
        assert first.startswith(b"SIP/2.0 401"), first[:100]
        auth = answer_challenge(header(first, "WWW-Authenticate"), Credentials(username, password), "INVITE", uri)
        second, _ = self.invite(user, auth)
        return auth, second


async def _guarded(endpoint_factory, **kwargs):
    ep = await endpoint_factory(**kwargs)
    authed: list[tuple[str, str]] = []

    async def handler(incoming: IncomingCall) -> None:
        user = await incoming.check_auth(REALM, PASSWORDS.get)
        if user:
            authed.append((str(incoming.request_uri), user))
            await incoming.reject(486)

    ep.on_incoming = handler
    return ep, authed


@pytest.fixture
async def guarded(endpoint_factory):
    return await _guarded(endpoint_factory)


@pytest.fixture
async def throttled(endpoint_factory):
    from parley.sip.guard import SipLimits

    return await _guarded(endpoint_factory, limits=SipLimits(
        auth_free_failures=2, auth_block_after=6, auth_block_seconds=30, auth_max_delay=0.4))


async def test_captured_authorization_is_refused_on_another_uri_and_on_replay(guarded) -> None:
    ep, authed = guarded
    phone = Phone("127.0.0.2", ep.port)
    auth, ok = await asyncio.to_thread(phone.challenge_and_answer, "alice", "s3cret")
    assert ok.startswith(b"SIP/2.0 486") and len(authed) == 1
    other, _ = await asyncio.to_thread(phone.invite, "999", auth)  # same header, another Request-URI
    assert not other.startswith(b"SIP/2.0 486"), "digest for one URI accepted on another"
    replay, _ = await asyncio.to_thread(phone.invite, "100", auth)  # same URI, same nonce and nc
    assert replay.startswith(b"SIP/2.0 401") and "stale=true" in header(replay, "WWW-Authenticate")
    assert len(authed) == 1


async def test_nonce_is_bound_to_its_source_and_expires_stale(guarded) -> None:
    ep, authed = guarded
    phone = Phone("127.0.0.2", ep.port)
    first, uri = await asyncio.to_thread(phone.invite)
    auth = answer_challenge(header(first, "WWW-Authenticate"), Credentials("alice", "s3cret"), "INVITE", uri)
    thief = Phone("127.0.0.3", ep.port)
    stolen, _ = await asyncio.to_thread(thief.invite, "100", auth)
    assert stolen.startswith(b"SIP/2.0 401") and not authed
    ep.challenger(REALM).nonce_ttl = 0.2
    await asyncio.sleep(0.3)
    late, _ = await asyncio.to_thread(phone.invite, "100", auth)
    assert late.startswith(b"SIP/2.0 401") and "stale=true" in header(late, "WWW-Authenticate")
    assert not authed


async def test_guessing_is_slowed_then_blocked_and_logged_once(throttled) -> None:
    from parley.logging import configure

    configure()  # the app's logging, whatever an earlier test left configured
    ep, authed = throttled
    phone = Phone("127.0.0.4", ep.port)
    times: list[float] = []
    with capture_logs() as logs:
        for i in range(6):  # auth_block_after
            t0 = time.monotonic()
            _, resp = await asyncio.to_thread(phone.challenge_and_answer, "alice", f"guess{i}")
            times.append(time.monotonic() - t0)
            assert resp.startswith(b"SIP/2.0 403")
        # blocked now: the source is refused at once, with or without (right) credentials
        for _ in range(2):
            t0 = time.monotonic()
            resp, _ = await asyncio.to_thread(phone.invite)
            assert resp.startswith(b"SIP/2.0 403") and time.monotonic() - t0 < 0.3
        assert not authed
    assert min(times[3:6]) >= 0.15, times  # progressive delay after the free failures
    blocked = [e for e in logs if e["event"] == "sip.auth_blocked"]
    assert 1 <= len(blocked) <= 2, blocked  # once per key (source, username) per episode
    # another source and user are not affected by this episode
    other = Phone("127.0.0.5", ep.port)
    PASSWORDS["bob"] = "pw"
    _, resp = await asyncio.to_thread(other.challenge_and_answer, "bob", "pw")
    assert resp.startswith(b"SIP/2.0 486")


def test_a_nonce_answered_at_once_is_fresh() -> None:
    """A phone on a fast link answers within the same millisecond the nonce was made; that answer
    must not be called stale (the nonce's time stamp is never later than the clock)."""
    from parley.sip.auth import DigestChallenger

    ch = DigestChallenger(REALM)
    verdicts = {ch.nonce_state(ch.new_nonce("127.0.0.9"), "127.0.0.9") for _ in range(2000)}
    assert verdicts == {"ok"}
