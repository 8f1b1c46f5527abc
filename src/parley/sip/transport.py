"""SIP transports (RFC 3261 §18, RFC 3581): UDP and TCP on one port, symmetric.

Received requests get `received`/`rport` stamped on their top Via (a `received` the peer wrote
itself is overwritten); responses go back to where the request really came from (RFC 3581): on
the same TCP connection when it is open, else to the source address and port (UDP; symmetric
response routing whether or not the request asked for `rport`). Only a request from a trusted source (`SipLimits.trusted_sources`) is
answered per its Via `received`/`rport`. No name is ever resolved on the event loop: UDP sends take IP literals only,
and names go through `Resolver`. Malformed requests are answered 400 (505 for an unknown SIP
version) when a response can be built, otherwise dropped, with at most a few log lines per source;
a bad TCP frame closes that connection only. Per-source rate limits, TCP connection caps and
idle/slow-message timeouts are those of `SipLimits`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable

from parley.logging import get_logger
from parley.support.taskset import TaskSet
from parley.sip.errors import SipParseError
from parley.sip.guard import LogLimiter, RateLimiter, SipLimits
from parley.sip.message import (
    MAX_MESSAGE_BYTES, SipRequest, SipResponse, content_length_of, header_end, parse_message,
    request_line_version,
)
from parley.sip.resolver import Resolver, is_ip
from parley.sip.uri import Via

log = get_logger(__name__)

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


@dataclass
class Source:
    """Where a message came from."""

    transport: str  # "udp" | "tcp"
    addr: tuple[str, int]
    conn: "TcpConnection | None" = None


Handler = Callable[[SipRequest | SipResponse, Source], None]


class _UdpSocket:
    """The SIP UDP socket. Unlike an asyncio datagram transport, which reads one datagram per
    event-loop iteration, each readiness callback drains up to `BURST` datagrams, so signalling
    keeps up while the loop is busy with media."""

    BURST = 256

    def __init__(self, layer: "TransportLayer", sock: socket.socket) -> None:
        self.layer = layer
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)
        self._sends = TaskSet("sip-udp", on_failure=lambda _task, exc: log.info("sip.udp_send_failed",
                                                                               error=str(exc)))

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _readable(self) -> None:
        for _ in range(self.BURST):
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors surface here; keep listening
                log.debug("sip.udp_error", error=str(exc))
                continue
            if not data.strip(b"\r\n\x00 "):
                continue  # keep-alive
            self.layer.received(data, Source("udp", (addr[0], addr[1])), stream=False)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send to an IP literal (a name would make `sendto` resolve it, blocking the loop)."""
        if not is_ip(addr[0]):
            log.info("sip.udp_send_refused", peer=addr, reason="not an IP address")
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._sends.spawn(self.loop.sock_sendto(self.sock, data, addr), name="sip-udp-send")
        except OSError as exc:
            log.info("sip.udp_send_failed", peer=addr, error=str(exc))

    def close(self) -> None:
        self._sends.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class TcpConnection:
    """One TCP connection (accepted or opened); frames messages by Content-Length."""

    def __init__(self, layer: "TransportLayer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 accepted: bool = False):
        self.layer = layer
        self.reader = reader
        self.writer = writer
        self.accepted = accepted
        self.framed = 0  # complete messages received: a quiet call's flow may idle longer than a stranger
        peer = writer.get_extra_info("peername")
        self.addr: tuple[str, int] = (peer[0], peer[1])
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _read(self, partial: bool, started: float) -> bytes:
        """The next chunk; TimeoutError when the peer is idle too long or a started message is too slow."""
        limits = self.layer.limits
        timeout = (limits.tcp_session_idle_timeout if self.framed else limits.tcp_idle_timeout) or None
        if partial and limits.tcp_message_timeout:
            left = limits.tcp_message_timeout - (time.monotonic() - started)
            timeout = max(0.0, min(timeout or left, left))
        return await asyncio.wait_for(self.reader.read(65536), timeout)

    @property
    def open(self) -> bool:
        return not self.writer.is_closing()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def _run(self) -> None:
        buf = bytearray()
        started = time.monotonic()
        try:
            while True:
                try:
                    chunk = await self._read(bool(buf.strip(b"\r\n")), started)
                except asyncio.TimeoutError:
                    reason = "message too slow" if buf.strip(b"\r\n") else "idle"
                    self.layer.stats["tcp_timeouts"] += 1
                    log.info("sip.tcp_timeout", peer=self.addr, reason=reason)
                    break
                if not chunk:
                    break
                if not buf.strip(b"\r\n"):
                    started = time.monotonic()
                buf += chunk
                while True:
                    while buf[:2] == b"\r\n":
                        if buf[:4] == b"\r\n\r\n":
                            self.send(b"\r\n")  # RFC 5626 pong
                            del buf[:4]
                        else:
                            del buf[:2]
                    end = header_end(buf)
                    if end < 0:
                        if len(buf) > MAX_MESSAGE_BYTES:
                            raise SipParseError("headers too large")
                        break
                    length = content_length_of(bytes(buf[:end]))
                    if length is None:
                        self.layer.received(bytes(buf[:end]), Source("tcp", self.addr, self), stream=True)
                        raise SipParseError("missing Content-Length on TCP")
                    if end + length > MAX_MESSAGE_BYTES:
                        raise SipParseError("message too large")
                    if len(buf) < end + length:
                        break
                    frame = bytes(buf[: end + length])
                    del buf[: end + length]
                    self.framed += 1
                    self.layer.received(frame, Source("tcp", self.addr, self), stream=True)
        except (SipParseError, ConnectionError, asyncio.IncompleteReadError) as exc:
            self.layer.log_limited("sip.tcp_closed", self.addr, reason=str(exc))
        except asyncio.CancelledError:
            pass
        finally:
            self.layer.connection_closed(self)
            self.writer.close()

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


class TransportLayer:
    """UDP and TCP listeners on one host:port, with per-peer TCP connection reuse."""

    def __init__(self, host: str, port: int, transports: tuple[str, ...], handler: Handler,
                 public_host: str | None = None, limits: SipLimits | None = None) -> None:
        self.host = host
        self.port = port
        self.transports = tuple(t.lower() for t in transports)
        self.handler = handler
        self.public_host = public_host or host
        self._udp: _UdpSocket | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._conns: dict[tuple[str, int], TcpConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[TcpConnection]] = {}
        self._tasks = TaskSet("sip-transport")
        self.limits = limits or SipLimits()
        self.resolver = Resolver(self.limits.dns_timeout, self.limits.dns_cache_seconds)
        self._rate = RateLimiter(self.limits.requests_per_second, self.limits.request_burst)
        self._logs = LogLimiter(self.limits.log_burst, self.limits.log_window)
        self._accepted: dict[str, int] = {}  # accepted TCP connections per source IP
        self._exempt: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._trusted_nets = [ipaddress.ip_network(t, strict=False) for t in self.limits.trusted_sources if "/" in t]
        self.stats = {"received": 0, "malformed": 0, "sent": 0, "rate_limited": 0, "tcp_refused": 0,
                      "tcp_timeouts": 0, "crashes": 0, "handler_errors": 0}

    def trusted(self, source: Source) -> bool:
        """A source in `SipLimits.trusted_sources` (an IP or a CIDR, e.g. the proxy's network)."""
        return self._in(source.addr[0], self._trusted_nets) or source.addr[0] in self.limits.trusted_sources

    @staticmethod
    def _in(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
        if not networks:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in networks)

    def exempt_networks(self, networks: list[str]) -> None:
        """Addresses (IPs or CIDRs) whose traffic is not rate-limited or capped, though not trusted for
        Via `received`: a configured trunk's carrier sends many calls from a few addresses."""
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in networks]

    def exempt(self, ip: str) -> bool:
        """True for a trusted source or an address in `exempt_networks`: no per-source limit applies."""
        if ip in self.limits.trusted_sources:
            return True
        return self._in(ip, self._trusted_nets) or self._in(ip, self._exempt)

    def log_limited(self, event: str, peer: tuple[str, int], **fields: object) -> None:
        """Log `event` for `peer` unless that source already had its share this window (one line
        then says how many were left out): a flood of bad packets costs a few lines, not one each."""
        ok, suppressed = self._logs.allow(peer[0], time.monotonic())
        if suppressed:
            log.info("sip.log_suppressed", peer=peer[0], lines=suppressed)
        if ok:
            log.info(event, peer=peer, **fields)

    async def start(self) -> None:
        """Bind UDP and TCP on the same port; with port 0, retry until one number is free for both."""
        requested = self.port
        for attempt in range(20):
            try:
                await self._bind(requested)
                return
            except OSError:
                await self.close()
                self.port = requested
                if requested != 0 or attempt == 19:
                    raise

    async def _bind(self, port: int) -> None:
        if "udp" in self.transports:
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                try:  # absorb bursts while the loop is busy (the kernel caps this at net.core.rmem_max)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                except OSError:
                    pass
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                raise
            self._udp = _UdpSocket(self, sock)
            port = self._udp.port
        if "tcp" in self.transports:
            self._tcp_server = await asyncio.start_server(self._accept, self.host, port, reuse_address=True)
            port = self._tcp_server.sockets[0].getsockname()[1]
        self.port = port

    async def close(self) -> None:
        self._tasks.cancel()
        if self._udp is not None:
            self._udp.close()
        self._udp = None
        if self._tcp_server:
            self._tcp_server.close()
        self._tcp_server = None
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0])
        limits = self.limits
        total = sum(self._accepted.values())
        if not self.exempt(ip) and (
            (limits.tcp_max_connections and total >= limits.tcp_max_connections)
            or (limits.tcp_max_per_source and self._accepted.get(ip, 0) >= limits.tcp_max_per_source)
        ):
            self.stats["tcp_refused"] += 1
            self.log_limited("sip.tcp_refused", (ip, int(peer[1])), reason="connection cap")
            writer.close()
            return
        self._accepted[ip] = self._accepted.get(ip, 0) + 1
        conn = TcpConnection(self, reader, writer, accepted=True)
        self._conns[conn.addr] = conn

    @property
    def tcp_connections(self) -> int:
        return len(self._conns)

    def connection_closed(self, conn: TcpConnection) -> None:
        """`conn` ended: new requests to its peer open a fresh connection."""
        if self._conns.get(conn.addr) is conn:
            del self._conns[conn.addr]
        if conn.accepted:
            ip = conn.addr[0]
            left = self._accepted.get(ip, 0) - 1
            if left > 0:
                self._accepted[ip] = left
            else:
                self._accepted.pop(ip, None)
            conn.accepted = False

    # receiving -------------------------------------------------------------------------------
    def received(self, data: bytes, source: Source, stream: bool) -> None:
        """One datagram or TCP frame from `source`: parsed and passed to the handler, or answered 400.
        Over the source's rate (`SipLimits.requests_per_second`) it is dropped unread."""
        self.stats["received"] += 1
        if not self.exempt(source.addr[0]) and not self._rate.allow(source.addr[0], time.monotonic()):
            self.stats["rate_limited"] += 1
            self.log_limited("sip.rate_limited", source.addr, transport=source.transport)
            return
        try:
            msg = parse_message(data, stream=stream)
            msg.validate()
            if isinstance(msg, SipRequest):
                self._stamp_via(msg, source)
        except SipParseError as exc:
            self.stats["malformed"] += 1
            self.log_limited("sip.malformed", source.addr, transport=source.transport, reason=str(exc)[:200])
            self._bad_request(data, source, str(exc), exc.status)
            return
        except Exception as exc:  # a bug must not take the listener down: one line, no traceback flood
            self.stats["malformed"] += 1
            self.stats["crashes"] += 1
            self.log_limited("sip.parse_crash", source.addr, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        try:
            self.handler(msg, source)
        except Exception as exc:
            self.stats["handler_errors"] += 1
            self.log_limited("sip.handler_error", source.addr, error=f"{type(exc).__name__}: {str(exc)[:200]}")

    def _stamp_via(self, msg: SipRequest, source: Source) -> None:
        values = msg.headers.get_all("Via")
        top = Via.parse(values[0])
        changed = False
        if top.host.strip("[]") != source.addr[0]:
            top.params["received"] = source.addr[0]
            changed = True
        elif "received" in top.params and not self.trusted(source):
            del top.params["received"]  # forged: the packet came from sent-by itself
            changed = True
        if "rport" in top.params:
            top.params["rport"] = str(source.addr[1])
            top.params.setdefault("received", source.addr[0])
            changed = True
        if changed:
            msg.headers.replace_first("Via", str(top))

    def _bad_request(self, data: bytes, source: Source, reason: str, status: int = 400) -> None:
        """Answer 400 (or `status`) when the broken message is a request carrying the headers a
        response needs; the answer goes to the packet's source, whatever its Via says."""
        try:
            text = data[:MAX_MESSAGE_BYTES].lstrip(b"\r\n").decode("utf-8", "replace").replace("\r\n", "\n")
            head = text.split("\n\n", 1)[0]
            lines = head.split("\n")
            if not lines or request_line_version(lines[0]) is None or lines[0].startswith(("ACK ", "SIP/")):
                return
            wanted = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
                      "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
            found: list[tuple[str, str]] = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                key = wanted.get(name.strip().lower())
                if sep and key and "\r" not in value and len(value) < 1024:
                    found.append((key, value.strip()))
            names = {n for n, _ in found}
            if not {"Via", "CSeq"} <= names:  # enough to match the response (RFC 4475 insuf)
                return
            vias = [v for n, v in found if n == "Via"]
            top_text = vias[0].split(",")[0]
            try:
                top: Via | None = Via.parse(top_text)
            except SipParseError:
                top = None
            safe_reason = re.sub(r"[^\x20-\x7e]", "?", reason)[:100]
            phrase = "Version Not Supported" if status == 505 else "Bad Request"
            via_line = re.sub(r"[^\x20-\x7e]", "?", top_text) if top is None else str(top)
            out = [f"SIP/2.0 {status} {phrase} ({safe_reason})", f"Via: {via_line}"]
            out += [f"{n}: {v}" for n, v in found if n != "Via"]
            out += ["Content-Length: 0", "", ""]
            payload = "\r\n".join(out).encode()
            if source.conn is not None:
                source.conn.send(payload)
            elif self._udp is not None:
                self._udp.sendto(payload, source.addr)  # symmetric, as send_response
        except Exception:
            return

    # sending ---------------------------------------------------------------------------------
    def via_for(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.public_host}:{self.port};branch={branch};rport"

    def contact_host(self) -> str:
        return f"{self.public_host}:{self.port}"

    async def send(self, data: bytes, transport: str, addr: tuple[str, int]) -> None:
        """Send bytes to addr: UDP from our listening socket, TCP on an existing or new connection."""
        self.stats["sent"] += 1
        if transport == "udp":
            if self._udp is None:
                raise ConnectionError("UDP transport is not running")
            self._udp.sendto(data, addr)
            return
        conn = await self._connection(addr)
        conn.send(data)

    def send_response(self, response: SipResponse, source: Source | None = None) -> None:
        """Send a response per its top Via (§18.2.2), reusing the request's TCP connection."""
        data = response.to_bytes()
        self.stats["sent"] += 1
        via = response.top_via
        if source is not None and source.conn is not None and source.conn.open:
            source.conn.send(data)
            return
        if source is not None and not self.trusted(source):
            # RFC 3581 symmetric response: back to the packet's real source address and port (UDP),
            # never to a host the peer named; a closed TCP flow is reopened to source IP + Via port
            if source.transport == "udp":
                if self._udp is not None:
                    self._udp.sendto(data, source.addr)
                return
            addr = (source.addr[0], via.port or 5060)
        else:
            addr = via.response_address()
        if via.transport == "UDP" and (source is None or source.transport == "udp"):
            if self._udp is None:
                return
            if is_ip(addr[0]):
                self._udp.sendto(data, addr)
            else:
                self._tasks.spawn(self._send_udp_resolved(data, addr), name="sip-udp-resolve")
            return
        conn = self._conns.get(addr)
        if conn is not None and conn.open:
            conn.send(data)
        else:
            self._tasks.spawn(self._send_tcp_later(data, addr), name="sip-tcp-send")

    async def _send_udp_resolved(self, data: bytes, addr: tuple[str, int]) -> None:
        ip = await self.resolver.resolve(addr[0])
        if ip is None:
            log.info("sip.response_unresolvable", host=addr[0][:100])
        elif self._udp is not None:
            self._udp.sendto(data, (ip, addr[1]))

    async def _send_tcp_later(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            ip = await self.resolver.resolve(addr[0])
            if ip is None:
                raise OSError(f"cannot resolve {addr[0][:100]}")
            (await self._connection((ip, addr[1]))).send(data)
        except OSError as exc:
            log.info("sip.tcp_response_failed", peer=addr, error=str(exc))

    async def _connection(self, addr: tuple[str, int]) -> TcpConnection:
        conn = self._conns.get(addr)
        if conn is not None and conn.open:
            return conn
        pending = self._connecting.get(addr)
        if pending is not None:
            return await pending
        fut: asyncio.Future[TcpConnection] = asyncio.get_running_loop().create_future()
        self._connecting[addr] = fut
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1]), 5.0)
            conn = TcpConnection(self, reader, writer)
            self._conns[addr] = conn
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            fut.set_exception(ConnectionError(f"cannot connect to {addr[0]}:{addr[1]}: {exc}"))
            fut.exception()
            raise ConnectionError(f"cannot connect to {addr[0]}:{addr[1]}: {exc}") from exc
        finally:
            self._connecting.pop(addr, None)
