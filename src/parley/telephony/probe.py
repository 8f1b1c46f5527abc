"""Reach a trunk from here: an OPTIONS round trip and, with credentials, a test REGISTER handshake.

Used by `parley trunk status` and `parley doctor`; answers in words with the likely fix.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from parley.sip.auth import Credentials
from parley.sip.endpoint import SipEndpoint
from parley.sip.errors import TransactionTimeout
from parley.sip.message import Headers, SipRequest
from parley.sip.uri import NameAddr, SipUri
from parley.telephony.trunks import OutboundSide


@dataclass(frozen=True)
class ProbeResult:
    """One check: `ok`, what happened in words, and the round trip when there was one."""

    ok: bool
    message: str
    rtt_ms: float | None = None


def _request(endpoint: SipEndpoint, method: str, target: SipUri, user: str, transport: str) -> SipRequest:
    aor = SipUri.parse(f"sip:{user}@{target.host}")
    h = Headers()
    h.add("Max-Forwards", "70")
    h.add("From", str(NameAddr(aor, None, {"tag": os.urandom(6).hex()})))
    h.add("To", str(NameAddr(aor if method == "REGISTER" else target)))
    h.add("Call-ID", f"{os.urandom(10).hex()}@{endpoint.public_host}")
    h.add("CSeq", f"1 {method}")
    h.add("Contact", endpoint.contact(transport, user))
    if method == "REGISTER":
        h.add("Expires", "0")  # a handshake only: register nothing
    return SipRequest(headers=h, method=method, uri=str(target.copy(user=None)))


def _target(out: OutboundSide) -> SipUri:
    params = "" if out.transport == "udp" else f";transport={out.transport}"
    return SipUri.parse(f"sip:{out.host}:{out.port}{params}")


async def options_ping(endpoint: SipEndpoint, out: OutboundSide, timeout: float = 5.0) -> ProbeResult:
    """Send OPTIONS to the trunk; any final response means it is reachable."""
    target = _target(out)
    start = time.monotonic()
    try:
        resp = await asyncio.wait_for(
            endpoint.request(_request(endpoint, "OPTIONS", target, "parley", out.transport), dest=target), timeout)
    except (TransactionTimeout, asyncio.TimeoutError):
        return ProbeResult(False, f"no answer to OPTIONS from {out.host}:{out.port}/{out.transport} "
                                  f"within {timeout:g} s: "
                                  "check host, port, transport and firewalls")
    except OSError as exc:
        return ProbeResult(False, f"cannot reach {out.host}:{out.port}: {exc.strerror or exc}: check the host name")
    rtt = (time.monotonic() - start) * 1000
    return ProbeResult(True, f"reachable: OPTIONS answered {resp.status} {resp.reason} in {rtt:.0f} ms", rtt)


async def register_check(endpoint: SipEndpoint, out: OutboundSide, timeout: float = 8.0) -> ProbeResult:
    """A REGISTER (Expires: 0) with the trunk's credentials: proves the digest handshake works."""
    if not (out.username and out.password):
        return ProbeResult(True, "no credentials configured: nothing to check (IP-authenticated trunk?)")
    target = _target(out)
    creds = Credentials(out.username, out.password.get_secret_value())
    start = time.monotonic()
    try:
        resp = await asyncio.wait_for(endpoint.request(
            _request(endpoint, "REGISTER", target, out.username, out.transport), credentials=creds, dest=target),
            timeout)
    except (TransactionTimeout, asyncio.TimeoutError, OSError) as exc:
        return ProbeResult(False, f"no answer to REGISTER from {out.host}:{out.port}: {str(exc) or 'no final response in time'}")
    rtt = (time.monotonic() - start) * 1000
    if 200 <= resp.status < 300:
        return ProbeResult(True, f"credentials accepted ({resp.status} {resp.reason})", rtt)
    if resp.status in (401, 403, 407):
        return ProbeResult(False, f"{resp.status} {resp.reason}: credentials rejected, check username/password "
                                  "or the provider's IP access list", rtt)
    if resp.status in (404, 405, 501):
        return ProbeResult(True, f"trunk does not take REGISTER ({resp.status} {resp.reason}); "
                                 "fine for IP-authenticated trunks", rtt)
    return ProbeResult(False, f"REGISTER answered {resp.status} {resp.reason}", rtt)
