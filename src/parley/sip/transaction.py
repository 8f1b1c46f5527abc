"""SIP transactions (RFC 3261 §17, with RFC 6026's Accepted states).

Client and server, INVITE and non-INVITE, timers A–K (and M/L). Retransmissions are sent only on
UDP; retransmitted requests are absorbed by re-sending the last response; the INVITE client
transaction ACKs non-2xx finals itself. Timers use `loop.call_later`, so an idle transaction costs
no task.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from parley.logging import get_logger
from parley.support.taskset import TaskSet
from parley.sip.message import Headers, SipRequest, SipResponse

if TYPE_CHECKING:
    from parley.sip.transport import Source, TransportLayer

log = get_logger(__name__)

T1 = 0.5
T2 = 4.0
T4 = 5.0


@dataclass(frozen=True)
class SipTimers:
    """RFC 3261's T1 (round-trip estimate; every timeout is a multiple: 64*T1 = 32 s by default) and T2
    (longest retransmit interval). §17.1.1.1 recommends a larger T1 on high-latency links; on a LAN or
    loopback a smaller one shortens how long an unanswered transaction or an un-ACKed 2xx is held."""

    t1: float = T1
    t2: float = T2

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"SIP timers need 0 < T1 <= T2; got T1={self.t1}, T2={self.t2}")


def new_branch() -> str:
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


class _Timers:
    def __init__(self) -> None:
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def start(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self.stop(name)
        self._handles[name] = asyncio.get_running_loop().call_later(delay, fn)

    def stop(self, name: str) -> None:
        h = self._handles.pop(name, None)
        if h:
            h.cancel()

    def stop_all(self) -> None:
        for h in self._handles.values():
            h.cancel()
        self._handles.clear()


class ClientTransaction:
    """Sends one request and delivers its responses to `on_response` (retransmissions filtered).

    `on_timeout` is called when Timer B/F fires (no final response) or the transport fails.
    """

    def __init__(
        self, manager: "TransactionManager", request: SipRequest, transport: str, addr: tuple[str, int],
        on_response: Callable[[SipResponse], None], on_timeout: Callable[[str], None],
    ) -> None:
        self.manager = manager
        self.request = request
        self.transport = transport
        self.addr = addr
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.method = request.method
        self.branch = request.top_via.branch or ""
        self.state = "calling" if self.method == "INVITE" else "trying"
        self.timers = _Timers()
        self._data = request.to_bytes()
        self._interval = manager.timers.t1
        self._ack: bytes | None = None
        self.key = (self.branch, self.method)

    async def start(self) -> None:
        self.manager.client[self.key] = self
        try:
            await self.manager.transport.send(self._data, self.transport, self.addr)
        except (OSError, ConnectionError) as exc:
            self._terminate()
            self.on_timeout(f"transport error: {exc}")
            return
        if self.transport == "udp":
            self.timers.start("retransmit", self._interval, self._retransmit)
        self.timers.start("timeout", 64 * self.manager.timers.t1, self._timeout)

    def _retransmit(self) -> None:
        if self.state not in ("calling", "trying", "proceeding"):
            return
        if self.method == "INVITE" and self.state == "proceeding":
            return  # Timer A stops on a provisional response
        self.manager.send_bytes(self._data, self.transport, self.addr)
        self._interval = min(self._interval * 2, self.manager.timers.t2) if self.method != "INVITE" else self._interval * 2
        if self.method != "INVITE" and self.state == "proceeding":
            self._interval = self.manager.timers.t2
        self.timers.start("retransmit", self._interval, self._retransmit)

    def _timeout(self) -> None:
        if self.state in ("calling", "trying", "proceeding"):
            self._terminate()
            self.on_timeout("timeout")

    def receive(self, response: SipResponse) -> None:
        status = response.status
        if self.method == "INVITE":
            if status < 200:
                if self.state in ("calling", "proceeding"):
                    self.state = "proceeding"
                    self.timers.stop("retransmit")
                    self.on_response(response)
            elif status < 300:
                if self.state in ("calling", "proceeding"):
                    self.state = "accepted"
                    self.timers.stop_all()
                    self.timers.start("M", 64 * self.manager.timers.t1, self._terminate)
                if self.state == "accepted":
                    self.on_response(response)  # every 2xx: the TU (re)sends the ACK
            else:
                ack = self._build_ack(response)
                self.manager.send_bytes(ack, self.transport, self.addr)
                if self.state in ("calling", "proceeding"):
                    self.state = "completed"
                    self.timers.stop_all()
                    self.timers.start("D", 32.0 if self.transport == "udp" else 0.0, self._terminate)
                    self.on_response(response)
        else:
            if status < 200:
                if self.state in ("trying", "proceeding"):
                    self.state = "proceeding"
                    self.on_response(response)
            elif self.state in ("trying", "proceeding"):
                self.state = "completed"
                self.timers.stop_all()
                self.timers.start("K", T4 if self.transport == "udp" else 0.0, self._terminate)
                self.on_response(response)

    def _build_ack(self, response: SipResponse) -> bytes:
        """ACK for a non-2xx final (§17.1.1.3): same branch, To from the response, Route copied."""
        if self._ack is None:
            h = Headers()
            h.add("Via", self.request.headers.get_all("Via")[0])
            for name in ("Route",):
                for v in self.request.headers.get_all(name):
                    h.add(name, v)
            h.add("Max-Forwards", "70")
            h.add("From", self.request.headers.get("From") or "")
            h.add("To", response.headers.get("To") or "")
            h.add("Call-ID", self.request.call_id)
            h.add("CSeq", f"{self.request.cseq[0]} ACK")
            self._ack = SipRequest(headers=h, method="ACK", uri=self.request.uri).to_bytes()
        return self._ack

    def cancel_timers(self) -> None:
        self.timers.stop_all()

    def _terminate(self) -> None:
        self.state = "terminated"
        self.timers.stop_all()
        if self.manager.client.get(self.key) is self:
            del self.manager.client[self.key]


class PendingInvite(Protocol):
    """The application side of an INVITE not yet answered (`IncomingCall`)."""

    def cancelled_by_peer(self) -> None:
        """A CANCEL matched the INVITE: answer it 487."""

    def no_decision(self) -> None:
        """Timer L ran out with no final response: answer 480."""


class ServerTransaction:
    """Absorbs retransmitted requests by re-sending the last response; retransmits INVITE non-2xx
    finals until ACK (Timers G/H/I) and keeps non-INVITE finals for Timer J."""

    def __init__(self, manager: "TransactionManager", request: SipRequest, source: "Source") -> None:
        self.manager = manager
        self.request = request
        self.source = source
        self.method = request.method
        self.state = "proceeding" if self.method == "INVITE" else "trying"
        self.last: SipResponse | None = None
        self.timers = _Timers()
        self.key = server_key(request)
        self.acked = asyncio.Event()
        self._interval = manager.timers.t1
        self.incoming: PendingInvite | None = None  # the IncomingCall of an INVITE, for CANCEL
        manager.server[self.key] = self
        self._counted = self._pending = False
        if self.method == "INVITE":
            manager.count_invite(source.addr[0], live=+1, pending=+1)
            self._counted = self._pending = True
            self.timers.start("L", 64 * self.manager.timers.t1 * 6, self._no_final)  # safety net for a TU that never answers

    @property
    def reliable(self) -> bool:
        return self.source.transport != "udp"

    def respond(self, response: SipResponse) -> None:
        if self.state in ("completed", "confirmed", "terminated", "accepted") and response.status >= 200:
            if not (self.state == "accepted" and response.status < 300):
                return
        self.last = response
        self.manager.transport.send_response(response, self.source)
        status = response.status
        if status < 200:
            if self.state == "trying":
                self.state = "proceeding"
            return
        self.incoming = None  # CANCEL no longer applies; don't keep the call alive for Timer L/H
        self.timers.stop("L")
        if self._pending:  # answered: no longer counts against its source's pending INVITEs
            self._pending = False
            self.manager.count_invite(self.source.addr[0], live=0, pending=-1)
        if self.method == "INVITE":
            if status < 300:
                self.state = "accepted"
                self.timers.start("L", 64 * self.manager.timers.t1, self._terminate)
            else:
                self.state = "completed"
                if not self.reliable:
                    self.timers.start("G", self._interval, self._retransmit)
                self.timers.start("H", 64 * self.manager.timers.t1, self._terminate)
        else:
            self.state = "completed"
            self.timers.start("J", 0.0 if self.reliable else 64 * self.manager.timers.t1, self._terminate)

    def _no_final(self) -> None:
        """The application never decided (192 s): tell the caller rather than go silent."""
        if self.state == "proceeding" and self.incoming is not None:
            self.incoming.no_decision()
        else:
            self._terminate()

    def _retransmit(self) -> None:
        if self.state != "completed" or self.last is None:
            return
        self.manager.transport.send_response(self.last, self.source)
        self._interval = min(self._interval * 2, self.manager.timers.t2)
        self.timers.start("G", self._interval, self._retransmit)

    def retransmission(self, request: SipRequest) -> None:
        """The same request arrived again."""
        if request.method == "ACK":
            if self.state == "completed":
                self.state = "confirmed"
                self.acked.set()
                self.timers.stop("G")
                self.timers.stop("H")
                self.timers.start("I", 0.0 if self.reliable else T4, self._terminate)
            return
        if self.last is not None and self.state in ("proceeding", "trying", "completed", "accepted"):
            self.manager.transport.send_response(self.last, self.source)

    def _terminate(self) -> None:
        self.state = "terminated"
        self.timers.stop_all()
        self.last = None  # let the response (and its SDP) go now, not when the caller lets go of us
        if self._counted:
            self.manager.count_invite(self.source.addr[0], live=-1, pending=-1 if self._pending else 0)
            self._counted = self._pending = False
        if self.manager.server.get(self.key) is self:
            del self.manager.server[self.key]


def server_key(request: SipRequest) -> tuple[str, str, str]:
    """Match key of §17.2.3: branch + sent-by + method (ACK matches its INVITE)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    host, port = via.sent_by
    return (via.branch or f"{request.call_id}:{request.cseq[0]}", f"{host}:{port}", method)


class TransactionManager:
    """Tables of live transactions, keyed for response and retransmission matching."""

    def __init__(self, transport: "TransportLayer", timers: SipTimers | None = None) -> None:
        self.transport = transport
        self.timers = timers or SipTimers()
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self.server: dict[tuple[str, str, str], ServerTransaction] = {}
        self._pending: dict[str, int] = {}  # INVITE server transactions without a final response, per source IP
        self._invite_total = 0  # INVITE server transactions not yet terminated (all states, all sources)
        self._sends = TaskSet("sip-transactions", on_failure=_send_failed)

    def count_invite(self, source_ip: str, live: int, pending: int) -> None:
        self._invite_total += live
        n = self._pending.get(source_ip, 0) + pending
        if n > 0:
            self._pending[source_ip] = n
        else:
            self._pending.pop(source_ip, None)

    @property
    def invites(self) -> int:
        """INVITE server transactions not yet terminated (also answered ones in Timer H/L), all sources."""
        return self._invite_total

    def invites_from(self, source_ip: str) -> int:
        """INVITE server transactions from `source_ip` still waiting for a final response."""
        return self._pending.get(source_ip, 0)

    def send_bytes(self, data: bytes, transport: str, addr: tuple[str, int]) -> None:
        self._sends.spawn(self.transport.send(data, transport, addr), name="sip-send")

    def match_response(self, response: SipResponse) -> ClientTransaction | None:
        try:
            branch = response.top_via.branch or ""
            method = response.cseq[1]
        except Exception:
            return None
        return self.client.get((branch, method))

    def match_request(self, request: SipRequest) -> ServerTransaction | None:
        return self.server.get(server_key(request))

    def match_cancel(self, cancel: SipRequest) -> ServerTransaction | None:
        via = cancel.top_via
        host, port = via.sent_by
        return self.server.get((via.branch or "", f"{host}:{port}", "INVITE"))

    def close(self) -> None:
        for t in list(self.client.values()):
            t.cancel_timers()
        for s in list(self.server.values()):
            s.timers.stop_all()
        self.client.clear()
        self.server.clear()
        self._pending.clear()
        self._invite_total = 0


def _send_failed(task: asyncio.Task[Any], exc: BaseException) -> None:
    log.info("sip.send_failed", error=str(exc))
