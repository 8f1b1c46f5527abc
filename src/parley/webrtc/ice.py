"""ICE for browser calls: which local addresses become host candidates, which STUN/TURN servers are used,
and a public address for a 1:1 NAT — all from settings, defaulting to nothing outside this machine.

aioice gathers host candidates from every interface but loopback, so a browser on this machine could not
reach us on 127.0.0.1. `host_addresses(...)` chooses the addresses for the gathering done inside one
`setLocalDescription` (a context variable read by a wrapper installed over aioice's address lookup; other
peer connections in the process gather as before).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from parley.settings import Settings

_chosen: ContextVar[list[str] | None] = ContextVar("parley_webrtc_ice_addresses", default=None)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return [a for a in chosen if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]


def _install() -> None:
    if aioice.ice.get_host_addresses is not _host_addresses:
        aioice.ice.get_host_addresses = _host_addresses


_install()


def local_addresses(settings: Settings) -> list[str]:
    """The addresses to offer: `WEBRTC_ICE_ADDRESSES`, else every interface address plus 127.0.0.1."""
    configured = [a.strip() for a in settings.webrtc_ice_addresses.split(",") if a.strip()]
    if configured:
        return configured
    found = _aioice_host_addresses(True, True)
    return ["127.0.0.1", *[a for a in found if a != "127.0.0.1"]]


@contextmanager
def host_addresses(addresses: list[str]) -> Iterator[None]:
    """Gather host candidates on exactly `addresses` inside this block (this task and its children)."""
    token = _chosen.set(list(addresses))
    try:
        yield
    finally:
        _chosen.reset(token)


def ice_servers(settings: Settings) -> list[RTCIceServer]:
    """STUN/TURN servers from `WEBRTC_ICE_SERVERS` (TURN ones get the TURN username/password)."""
    servers = []
    password = settings.webrtc_turn_password.get_secret_value()
    for url in (u.strip() for u in settings.webrtc_ice_servers.split(",")):
        if not url:
            continue
        if url.startswith(("turn:", "turns:")):
            servers.append(RTCIceServer(urls=url, username=settings.webrtc_turn_username or None,
                                        credential=password or None))
        else:
            servers.append(RTCIceServer(urls=url))
    return servers


def configuration(settings: Settings) -> RTCConfiguration:
    """The peer connection's configuration: the configured servers only (an empty list, never aiortc's
    default public STUN server)."""
    return RTCConfiguration(iceServers=ice_servers(settings))


def validate_ice_settings(settings: Settings) -> list[str]:
    """Problems in the WebRTC ICE settings, in words (empty when fine)."""
    problems = []
    for a in [a.strip() for a in settings.webrtc_ice_addresses.split(",") if a.strip()]:
        if not _is_ip(a):
            problems.append(f"WEBRTC_ICE_ADDRESSES: {a!r} is not an IP address")
    if settings.webrtc_public_address and not _is_ip(settings.webrtc_public_address):
        problems.append(f"WEBRTC_PUBLIC_ADDRESS: {settings.webrtc_public_address!r} is not an IP address")
    for url in (u.strip() for u in settings.webrtc_ice_servers.split(",")):
        if url and not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            problems.append(f"WEBRTC_ICE_SERVERS: {url!r} must start with stun:, stuns:, turn: or turns:")
    return problems


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def add_public_candidates(sdp: str, public_address: str) -> str:
    """For a 1:1 NAT: after each non-loopback host candidate, the same port on `public_address` as a
    server-reflexive candidate (what a STUN server would have told us)."""
    if not public_address:
        return sdp
    out: list[str] = []
    for line in sdp.split("\r\n"):
        out.append(line)
        if not line.startswith("a=candidate:") or " typ host" not in line:
            continue
        parts = line[len("a=candidate:"):].split()
        if len(parts) < 8 or parts[4] == public_address or _loopback(parts[4]):
            continue
        foundation, component, transport, priority, ip, port = parts[:6]
        out.append(f"a=candidate:{foundation}n {component} {transport} {max(1, int(priority) - 256)} "
                   f"{public_address} {port} typ srflx raddr {ip} rport {port}")
    return "\r\n".join(out)


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False
