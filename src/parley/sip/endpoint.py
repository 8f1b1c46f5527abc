"""`SipEndpoint`: the user agent. Listens on UDP/TCP, answers incoming INVITEs through
`on_incoming`, places calls with `invite()` (driven by `invite_client.InviteClient`), and routes
in-dialog requests to their `Call`. It is the `CallHost` of its calls and the `InviteHost` of its
INVITE clients: the public helpers under "helpers used by calls" are that interface.

    ep = SipEndpoint(host="127.0.0.1", port=5060)
    async def handler(incoming: IncomingCall):
        call = await incoming.accept()
        frame = await call.rtp.read_frame()
    ep.on_incoming = handler
    await ep.start()
    out = await ep.invite("sip:100@127.0.0.1:5070", from_="sip:parley@127.0.0.1")
    call = await out.answered()
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from parley.logging import get_logger
from parley.sip.auth import Credentials, DigestChallenger, DigestRetry
from parley.sip.call import ALLOW, Call, IncomingCall
from parley.sip.dialog import Dialog
from parley.sip.errors import CallFailed, SipParseError, TransactionTimeout
from parley.sip.guard import FailureThrottle, SipLimits
from parley.sip.invite_client import DialOptions, InviteClient, OutgoingCall
from parley.sip.message import SipRequest, SipResponse, make_response
from parley.sip.register import Registration
from parley.sip.sdp import PAYLOAD_TYPES, Negotiated, SessionDescription, negotiate
from parley.sip.transaction import (
    ClientTransaction, ServerTransaction, SipTimers, TransactionManager, new_branch, new_tag,
)
from parley.sip.transport import Source, TransportLayer
from parley.sip.uri import NameAddr, SipUri
from parley.support.taskset import TaskSet

if TYPE_CHECKING:
    from parley.sip.rtp_session import RtpSession

log = get_logger(__name__)

IncomingHandler = Callable[[IncomingCall], Awaitable[None]]


def _available_codecs() -> list[str]:
    from parley.media.codecs import CODECS

    return [name for name in PAYLOAD_TYPES if name in CODECS]


class SipEndpoint:
    """A SIP user agent on one host:port (UDP and/or TCP)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5060,
        transports: tuple[str, ...] = ("udp", "tcp"),
        public_host: str | None = None,
        rtp_host: str | None = None,
        rtp_port_range: tuple[int, int] = (20000, 30000),
        user_agent: str = "Parley/0.1",
        codecs: list[str] | None = None,
        server_header: str | None = None,
        limits: SipLimits | None = None,
        timers: SipTimers | None = None,
    ) -> None:
        """`user_agent` goes on the requests we send; `server_header` (None: no header, the default,
        so scanners cannot fingerprint us) on our responses. `limits`: see `SipLimits`; `timers`: T1/T2
        (`SipTimers`, RFC 3261 defaults)."""
        for t in transports:
            if t not in ("udp", "tcp"):
                raise ValueError(f"unsupported SIP transport {t!r} (udp or tcp)")
        self.host = host
        self.transports = tuple(transports)
        self.public_host = public_host or host
        self.rtp_host = rtp_host or host
        self.rtp_port_range = rtp_port_range
        self.user_agent = user_agent
        self.server_header = server_header
        self.limits = limits or SipLimits()
        lim = self.limits
        #: digest failures, keyed "ip:<addr>" and "user:<name>" (see IncomingCall.check_auth)
        self.auth_throttle = FailureThrottle(lim.auth_free_failures, lim.auth_block_after,
                                             lim.auth_block_seconds, lim.auth_max_delay)
        available = _available_codecs()
        self.codecs = [c.upper() for c in (codecs or available) if c.upper() in available]
        if not self.codecs:
            raise ValueError(f"no usable codec among {codecs} (available: {available})")
        self.on_incoming: IncomingHandler | None = None
        self.transport = TransportLayer(host, port, self.transports, self._on_message, public_host=self.public_host,
                                        limits=self.limits)
        self.timers = timers or SipTimers()
        self.transactions = TransactionManager(self.transport, self.timers)
        self.calls: dict[tuple[str, str, str], Call] = {}
        self._challengers: dict[str, DigestChallenger] = {}
        self._tasks = TaskSet("sip.endpoint")
        self._started = False

    # lifecycle -----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.transport.port

    @property
    def media_address(self) -> str:
        """The address written into SDP (c=/o=)."""
        return self.public_host if self.public_host != self.host else self.rtp_host

    async def start(self) -> None:
        await self.transport.start()
        self._started = True
        log.info("sip.listening", host=self.host, port=self.port, transports=list(self.transports))

    async def close(self) -> None:
        """Hang up live calls (BYE, without waiting long) and stop listening."""
        calls = list(self.calls.values())
        if calls:
            await asyncio.wait([asyncio.ensure_future(c.hangup()) for c in calls], timeout=2.0)
        for c in calls:
            c.end("closed")
        self._tasks.cancel()
        self.transactions.close()
        await self.transport.close()
        self._started = False

    async def __aenter__(self) -> "SipEndpoint":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # helpers used by calls (CallHost, InviteHost) -------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run `coro` in the background until it ends or the endpoint closes."""
        return self._tasks.spawn(coro, name=name)

    def contact(self, transport: str, user: str = "parley") -> str:
        """Our Contact header value for `transport` ("udp" or "tcp")."""
        tp = ";transport=tcp" if transport == "tcp" else ""
        return f"<sip:{user}@{self.transport.contact_host()}{tp}>"

    def challenger(self, realm: str) -> DigestChallenger:
        """The digest checker for `realm` (one per realm, so its nonces stay valid across requests)."""
        ch = self._challengers.get(realm)
        if ch is None:
            ch = self._challengers[realm] = DigestChallenger(realm)
        return ch

    def register_call(self, call: Call) -> None:
        self.calls[call.dialog.id] = call

    def forget_call(self, call: Call) -> None:
        self.calls.pop(call.dialog.id, None)

    def send_response(self, response: SipResponse, source: Source | None) -> None:
        self.transport.send_response(response, source)

    async def new_rtp(self, neg: Negotiated) -> RtpSession:
        """A started RTP session for `neg` on a free port of `rtp_port_range` (OSError when none is free)."""
        from parley.media.codecs import get_codec
        from parley.sip.rtp_session import RtpSession

        rtp = RtpSession(
            self.rtp_host, port_range=self.rtp_port_range, codec=get_codec(neg.codec),
            telephone_event_pt=neg.telephone_event_pt,
            ptime_ms=neg.ptime,
        )
        await rtp.start()
        if neg.remote and neg.remote[0] != "0.0.0.0":
            rtp.set_remote(*neg.remote)
        rtp.set_direction(neg.direction)
        return rtp

    async def resolve(self, uri: SipUri, transport: str | None = None) -> tuple[str, tuple[str, int]]:
        """(transport, (ip, port)) to reach `uri`: its A record, no SRV (RFC 3263 fallback)."""
        tp = (transport or uri.params.get("transport") or self.transports[0]).lower()
        if tp not in self.transports:
            raise CallFailed(503, f"transport {tp} is not enabled")
        host, port = uri.address
        ip = await self.transport.resolver.resolve(host)  # cached, time-limited, off the loop
        if ip is None:
            raise CallFailed(503, f"cannot resolve {host[:100]}")
        return tp, (ip, port)

    # sending requests ----------------------------------------------------------------------------
    def stamp(self, req: SipRequest, transport: str) -> None:
        """A fresh top Via (new branch) for `transport`, and our User-Agent."""
        req.headers.remove("Via")
        req.headers.add("Via", self.transport.via_for(transport, new_branch()), first=True)
        if self.user_agent and "User-Agent" not in req.headers:
            req.headers.add("User-Agent", self.user_agent)

    async def route(
        self, req: SipRequest, dialog: Dialog | None, dest: SipUri | None,
    ) -> tuple[str, tuple[str, int]]:
        """Where `req` goes: the dialog's flow or next hop, else `dest`, its first Route, its Request-URI."""
        if dialog is not None:
            flow = dialog.flow
            if flow is not None and not dialog.route_set:
                if flow.transport == "tcp" and flow.conn and flow.conn.open:
                    return "tcp", flow.addr
                if flow.transport == "udp" and _behind_nat(dialog.remote_target, flow.addr):
                    return "udp", flow.addr
            hop = dialog.next_hop(req)
            return await self.resolve(hop, hop.params.get("transport") or dialog.transport)
        hop = dest or req.request_uri
        routes = req.headers.get_all("Route")
        if routes and dest is None:
            hop = NameAddr.parse(routes[0]).uri
        return await self.resolve(hop)

    async def request(
        self, req: SipRequest, dialog: Dialog | None = None, credentials: Credentials | None = None,
        dest: SipUri | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request and return its final response (answers one 401/407 with
        `credentials`). Raises TransactionTimeout when nothing final arrives within 64*T1."""
        transport, addr = await self.route(req, dialog, dest)
        digest = DigestRetry(credentials)
        while True:
            self.stamp(req, transport)
            resp = await self._transact(req, transport, addr)
            if not digest.authorize(req, resp):
                return resp
            if dialog is not None:  # the retry's CSeq is the dialog's next one
                num, method = req.cseq
                dialog.local_seq = max(dialog.local_seq, num)
                req.headers.set("CSeq", f"{dialog.local_seq} {method}")

    async def _transact(self, req: SipRequest, transport: str, addr: tuple[str, int]) -> SipResponse:
        fut: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

        def on_response(resp: SipResponse) -> None:
            if resp.status >= 200 and not fut.done():
                fut.set_result(resp)

        def on_timeout(why: str) -> None:
            if not fut.done():
                fut.set_exception(TransactionTimeout(f"{req.method} {req.uri}: {why}"))

        tx = ClientTransaction(self.transactions, req, transport, addr, on_response, on_timeout)
        await tx.start()
        return await fut

    async def invite_in_dialog(self, call: Call, req: SipRequest) -> SipResponse | None:
        """Send a re-INVITE in `call`'s dialog, ACK its 2xx; None on timeout."""
        transport, addr = await self.route(req, call.dialog, None)
        self.stamp(req, transport)
        fut: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()

        def on_response(resp: SipResponse) -> None:
            if resp.status < 200:
                return
            if resp.status < 300:
                self.send_ack(call, call.dialog.create_request("ACK", cseq=req.cseq[0]), transport, addr)
                call.dialog.update_target(resp)
            if not fut.done():
                fut.set_result(resp)

        def on_timeout(why: str) -> None:
            if not fut.done():
                fut.set_result(None)

        tx = ClientTransaction(self.transactions, req, transport, addr, on_response, on_timeout)
        await tx.start()
        return await fut

    def send_ack(self, call: Call | None, ack: SipRequest, transport: str, addr: tuple[str, int]) -> None:
        """Send the ACK for a 2xx to `addr`; kept on `call` to answer a retransmitted 2xx the same way."""
        self.stamp(ack, transport)
        data = ack.to_bytes()
        if call is not None:
            call.last_ack, call.ack_dest = data, (transport, addr)
        self.transactions.send_bytes(data, transport, addr)

    def resend_ack(self, call: Call) -> None:
        """The 2xx for `call` came again: send the same ACK again (§13.2.2.4)."""
        if call.last_ack is not None and call.ack_dest is not None:
            self.transactions.send_bytes(call.last_ack, *call.ack_dest)

    # placing calls ------------------------------------------------------------------------------
    async def invite(
        self,
        uri: str,
        from_: str | None = None,
        auth: Credentials | None = None,
        headers: dict[str, str] | None = None,
        display_name: str | None = None,
        timeout: float = 60.0,
        transport: str | None = None,
        proxy: str | None = None,
        codecs: list[str] | None = None,
    ) -> OutgoingCall:
        """Start dialling `uri`; returns at once with an `OutgoingCall` reporting progress.
        `from_` defaults to sip:parley@<our host>; `proxy` is an outbound proxy URI (loose route)."""
        if not self._started:
            raise RuntimeError("SipEndpoint.start() first")
        target = SipUri.parse(uri)
        if target.scheme not in ("sip", "sips"):
            raise ValueError(f"can only dial sip: URIs, not {uri!r}")
        call_id = f"{os.urandom(10).hex()}@{self.public_host}"
        options = DialOptions(
            from_, auth, headers or {}, display_name, timeout, transport, proxy,
            [c for c in (codecs or self.codecs) if c in self.codecs] or self.codecs,
        )
        client = InviteClient(self, call_id, target, options)
        await client.start()
        return client.outgoing

    # receiving -------------------------------------------------------------------------------------
    def _on_message(self, msg: SipRequest | SipResponse, source: Source) -> None:
        if isinstance(msg, SipResponse):
            self._on_response(msg)
        else:
            self._on_request(msg, source)

    def _on_response(self, resp: SipResponse) -> None:
        tx = self.transactions.match_response(resp)
        if tx is not None:
            tx.receive(resp)
            return
        # a 2xx retransmission after our INVITE transaction ended: re-send the ACK
        try:
            if 200 <= resp.status < 300 and resp.cseq[1] == "INVITE":
                call = self.calls.get((resp.call_id, resp.from_.tag or "", resp.to.tag or ""))
                if call is not None:
                    self.resend_ack(call)
        except SipParseError:
            return

    def _response(self, req: SipRequest, status: int, reason: str | None = None, **kw: Any) -> SipResponse:
        resp = make_response(req, status, reason, **kw)
        if self.server_header:
            resp.headers.add("Server", self.server_header)
        return resp

    def _on_request(self, req: SipRequest, source: Source) -> None:
        if req.method == "ACK":
            tx = self.transactions.match_request(req)
            if tx is not None and tx.state in ("completed", "confirmed"):
                tx.retransmission(req)
                return
            call = self._dialog_call(req)
            if call is not None:
                call.handle_request(req, None)
            return
        tx = self.transactions.match_request(req)
        if tx is not None:
            tx.retransmission(req)
            return
        cap, total = self.limits.invites_per_source, self.limits.invites_total
        if req.method == "INVITE" and not self.transport.exempt(source.addr[0]) and (
            (cap and self.transactions.invites_from(source.addr[0]) >= cap)
            or (total and self.transactions.invites >= total)
        ):
            # answered statelessly: a flood of INVITEs must not grow the transaction table
            self.transport.stats["invite_cap"] = self.transport.stats.get("invite_cap", 0) + 1
            self.transport.log_limited("sip.invite_cap", source.addr, per_source=cap, total=total)
            self.transport.send_response(
                self._response(req, 503, "Service Unavailable (too many calls from you)", to_tag=new_tag(),
                               extra={"Retry-After": "5"}), source)
            return
        tx = ServerTransaction(self.transactions, req, source)
        if req.method == "CANCEL":
            self._cancel(req, tx)
            return
        max_fwd = req.headers.get("Max-Forwards")
        if max_fwd is not None and max_fwd.strip() == "0" and req.method != "OPTIONS":
            tx.respond(self._response(req, 483))
            return
        if not self._acceptable(req, tx):
            return
        if req.to.tag:
            call = self._dialog_call(req)
            if call is None:
                tx.respond(self._response(req, 481))
            else:
                call.handle_request(req, tx)
            return
        method = req.method
        if method == "INVITE":
            self._incoming_invite(req, tx, source)
        elif method == "OPTIONS":
            tx.respond(self._response(req, 200, to_tag=new_tag(),
                                      extra={"Allow": ALLOW, "Accept": "application/sdp"}))
        elif method in ("BYE", "INFO", "NOTIFY", "REFER", "PRACK", "UPDATE"):
            tx.respond(self._response(req, 481, to_tag=new_tag()))
        elif method in KNOWN_METHODS:
            tx.respond(self._response(req, 405, to_tag=new_tag(), extra={"Allow": ALLOW}))
        else:
            tx.respond(self._response(req, 501, to_tag=new_tag(), extra={"Allow": ALLOW}))

    def _acceptable(self, req: SipRequest, tx: ServerTransaction) -> bool:
        """The UAS checks of RFC 3261 §8.2.2-8.2.3 every request gets (not ACK/CANCEL): a URI scheme
        we know (416), no Require we do not support (420), an Accept we can meet for INVITE (406)."""
        scheme = req.request_uri.scheme
        if scheme not in ("sip", "sips", "tel"):
            tx.respond(self._response(req, 416, to_tag=new_tag()))
            return False
        require = [r.strip() for r in req.headers.get_all("Require")]
        unsupported = [r for r in require if r and r.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported:
            tx.respond(self._response(req, 420, to_tag=new_tag(), extra={"Unsupported": ", ".join(unsupported)}))
            return False
        accept = req.headers.get_all("Accept")
        if req.method == "INVITE" and "Accept" in req.headers and not any(
            a.split(";")[0].strip().lower() in ("application/sdp", "application/*", "*/*") for a in accept
        ):
            tx.respond(self._response(req, 406, to_tag=new_tag(), extra={"Accept": "application/sdp"}))
            return False
        return True

    def _dialog_call(self, req: SipRequest) -> Call | None:
        return self.calls.get((req.call_id, req.to.tag or "", req.from_.tag or ""))

    def _cancel(self, cancel: SipRequest, tx: ServerTransaction) -> None:
        invite_tx = self.transactions.match_cancel(cancel)
        if invite_tx is None:
            tx.respond(self._response(cancel, 481))
            return
        tx.respond(self._response(cancel, 200))
        if invite_tx.state == "proceeding":
            if invite_tx.incoming is not None:
                invite_tx.incoming.cancelled_by_peer()
            else:
                invite_tx.respond(self._response(invite_tx.request, 487, to_tag=new_tag()))
            log.info("sip.cancelled", call_id=cancel.call_id)

    def _incoming_invite(self, req: SipRequest, tx: ServerTransaction, source: Source) -> None:
        offer: SessionDescription | None = None
        if req.body:
            if req.content_type != "application/sdp":
                tx.respond(self._response(req, 415, to_tag=new_tag(), extra={"Accept": "application/sdp"}))
                return
            try:
                offer = SessionDescription.parse(req.body)
            except (SipParseError, ValueError) as exc:
                tx.respond(self._response(req, 400, f"Bad Request (SDP: {exc})", to_tag=new_tag()))
                return
            if negotiate(offer, self.codecs) is None:
                tx.respond(self._response(req, 488, to_tag=new_tag(),
                                          extra={"Warning": '304 parley "no common audio codec"'}))
                return
        tx.respond(self._response(req, 100))
        if self.on_incoming is None:
            tx.respond(self._response(req, 480, "Temporarily Unavailable (no handler)", to_tag=new_tag()))
            return
        incoming = IncomingCall(self, req, tx, source, offer)
        tx.incoming = incoming
        self.spawn(self._run_handler(incoming))

    async def _run_handler(self, incoming: IncomingCall) -> None:
        assert self.on_incoming is not None
        try:
            await self.on_incoming(incoming)
        except CallFailed:
            pass
        except Exception as exc:
            log.exception("sip.incoming_handler_failed", call_id=incoming.call_id, error=str(exc))
            await incoming.reject(500, "Server Internal Error")  # unless it was answered or cancelled
            return
        await incoming.reject(480, "Temporarily Unavailable")

    # registration --------------------------------------------------------------------------------
    def registration(self, registrar: str, aor: str, credentials: Credentials | None = None,
                     expires: int = 3600, transport: str | None = None) -> Registration:
        """A `Registration` (see parley.sip.register) bound to this endpoint; `await reg.start()`."""
        return Registration(self, registrar, aor, credentials, expires, transport)


#: Methods of RFC 3261 and its common extensions: 405 when we do not serve one, 501 for any other.
KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "MESSAGE", "PUBLISH"})
SUPPORTED_EXTENSIONS = frozenset({"timer"})


def _behind_nat(contact: SipUri, source: tuple[str, int]) -> bool:
    """True when the peer's Contact is a private address that is not where its packets come from:
    then in-dialog requests go to the source address (symmetric signalling through NAT)."""
    try:
        host = ipaddress.ip_address(contact.address[0])
    except ValueError:
        return False
    if contact.address == source:
        return False
    private = host.is_private and not host.is_loopback
    shared = host in ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
    return private or shared

