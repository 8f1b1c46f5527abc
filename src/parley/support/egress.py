"""Where Parley may send HTTP requests on its own: the address policy against SSRF.

Call webhooks (`webhook_url`), HTTP tools and the incoming-call webhook all POST to URLs that someone other
than the operator may choose (an API client, a DNS record, a redirect). A URL is allowed only when every
address its host resolves to is a public unicast address, unless the operator allowed it:

* `WEBHOOK_ALLOWED_HOSTS`: comma-separated host names (exact, case-insensitive) and addresses or CIDR
  blocks (`hooks.internal, 10.20.0.0/16, fd00::/8`) that are allowed although not public;
* `WEBHOOK_ALLOW_LOOPBACK=true`: loopback (127.0.0.0/8, ::1) allowed — for development only.

Refused: loopback, private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud metadata
address 169.254.169.254, fe80::/10), carrier-grade NAT, unspecified (0.0.0.0, ::), multicast, reserved and
documentation ranges; an IPv6 address embedding an IPv4 one (::ffff:127.0.0.1, 6to4, Teredo, NAT64) is
judged by the IPv4 address inside. Host names are judged by what they resolve to (all addresses), and
integer, hex and octal IPv4 spellings (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) by the address
they mean, exactly as the resolver would read them.

The decisions (`address_refusal`, `EgressPolicy.refusal`, `literal_address`) are pure; `check_url` resolves
with `loop.getaddrinfo` (in the resolver's thread, never blocking the event loop) under a timeout.
`egress_http.py` applies the policy to every request (and so every redirect) an httpx client sends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The cloud instance-metadata addresses (AWS, GCP, Azure, OpenStack; AWS's IPv6 one).
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class EgressRefused(Exception):
    """A URL Parley will not send to; `reason` says why in words (and how to allow it)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason}")
        self.url = url
        self.reason = reason


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an address means (None for a name).

    Accepts `[v6]` and v6 with a zone (`fe80::1%eth0`), and every IPv4 spelling `inet_aton` accepts: one to
    four dot-separated parts, each decimal, `0x` hex or leading-zero octal, the last part filling the
    remaining bytes (`127.1` is 127.0.0.1, `2130706433` and `0x7f000001` too)."""
    h = host.strip().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return None
    parts = h.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            elif part.isascii() and part.isdigit():
                values.append(int(part))
            else:
                return None
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is, as words ("a loopback address"); None when it is a public
    unicast address. Pure."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = address_refusal(inner)
            return f"{why} ({inner}) inside an IPv6 address" if why else None
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return None


def _is_loopback(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_v4(ip)) is not None:
        return inner.is_loopback
    return ip.is_loopback


class EgressSettings(Protocol):
    """The two settings the policy reads (`parley.settings.Settings` has them)."""

    webhook_allowed_hosts: str
    webhook_allow_loopback: bool


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's exceptions to "public addresses only"."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    allow_loopback: bool = False
    resolve_timeout_s: float = 5.0
    setting: str = field(default="WEBHOOK_ALLOWED_HOSTS", compare=False)

    @classmethod
    def parse(cls, allowed: str, *, allow_loopback: bool = False) -> EgressPolicy:
        """From `WEBHOOK_ALLOWED_HOSTS` (comma/space separated names, addresses, CIDRs). ValueError names a
        bad entry (a CIDR with host bits set is accepted as its network)."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in allowed.replace(",", " ").split():
            entry = raw.strip().lower().strip("[]")
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"WEBHOOK_ALLOWED_HOSTS: {raw!r} is not a CIDR block") from None
                continue
            ip = literal_address(entry)
            if ip is not None:
                networks.append(ipaddress.ip_network(ip))
            else:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks), allow_loopback)

    @classmethod
    def of(cls, settings: EgressSettings) -> EgressPolicy:
        """The policy `WEBHOOK_ALLOWED_HOSTS` and `WEBHOOK_ALLOW_LOOPBACK` set."""
        return cls.parse(settings.webhook_allowed_hosts, allow_loopback=settings.webhook_allow_loopback)

    def host_allowed(self, host: str) -> bool:
        """True when `host` is named in the allow list (then its addresses are not judged)."""
        return host.strip("[]").lower().rstrip(".") in self.hosts

    def refusal(self, ip: IPAddress) -> str | None:
        """Why sending to `ip` is refused under this policy (None when allowed). Pure."""
        why = address_refusal(ip)
        if why is None:
            return None
        if self.allow_loopback and _is_loopback(ip):
            return None
        check = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_v4(ip)) is not None:
            check.append(inner)
        if any(a in net for a in check for net in self.networks if a.version == net.version):
            return None
        return why


@dataclass(frozen=True)
class Target:
    """A checked URL: its host, port and the allowed addresses it resolved to (empty: an allowed host
    name, left to the client to resolve)."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; EgressRefused when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(url, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EgressRefused(url, "must be an http(s):// URL")
    host = parts.hostname or ""
    if not host:
        raise EgressRefused(url, "has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def resolve(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    """Every address `host` resolves to (TCP), via the loop's resolver thread; OSError when none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout_s)
    except TimeoutError:
        raise OSError(f"resolving {host} took longer than {timeout_s:g} s") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise OSError(f"{host} has no address")
    return found


async def check_url(url: str, policy: EgressPolicy, *, unresolved_ok: bool = False) -> Target:
    """Check `url` against `policy` after resolving its host: the addresses to connect to, or
    EgressRefused saying why. A host that does not resolve is refused, unless `unresolved_ok` (the API
    accepts it then; every send checks again)."""
    _, host, port = split_url(url)
    if policy.host_allowed(host):
        return Target(host, port, ())
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await resolve(host, port, policy.resolve_timeout_s)
        except OSError as exc:
            if unresolved_ok:
                return Target(host, port, ())
            raise EgressRefused(url, f"{host} does not resolve ({exc})") from None
    for ip in addresses:
        why = policy.refusal(ip)
        if why is not None:
            if literal is None:
                what = f"{host} resolves to {ip}, {why}"
            elif host.strip("[]") == str(ip):
                what = f"{ip} is {why}"
            else:
                what = f"{host} means {ip}, {why}"
            hint = " (or WEBHOOK_ALLOW_LOOPBACK=true, for development)" if _is_loopback(ip) else ""
            raise EgressRefused(url, f"{what}; refused unless allowed in {policy.setting}{hint}")
    return Target(host, port, tuple(addresses))
