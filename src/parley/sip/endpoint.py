"""`SipEndpoint`: the user agent. Listens on UDP/TCP, answers incoming INVITEs through
`on_incoming`, places calls with `invite()`, and routes in-dialog requests to their `Call`.

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
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from parley.logging import get_logger
from parley.sip.auth import Credentials, DigestChallenger, answer_challenge, pick_challenge
from parley.sip.call import ALLOW, Call, IncomingCall, OutgoingCall
from parley.sip.dialog import Dialog
from parley.sip.errors import CallFailed, SipParseError, TransactionTimeout
from parley.sip.message import Headers, SipRequest, SipResponse, make_response
from parley.sip.sdp import Negotiated, SessionDescription, build_offer, negotiate
from parley.sip.transaction import T1, ClientTransaction, ServerTransaction, TransactionManager, new_branch, new_tag
from parley.sip.transport import Source, TransportLayer
from parley.sip.uri import NameAddr, SipUri

log = get_logger(__name__)

IncomingHandler = Callable[[IncomingCall], Awaitable[None]]


def _available_codecs() -> list[str]:
    from parley.media.codecs import CODECS

    return [name for name in ("PCMU", "PCMA", "G722") if name in CODECS]


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
    ) -> None:
        for t in transports:
            if t not in ("udp", "tcp"):
                raise ValueError(f"unsupported SIP transport {t!r} (udp or tcp)")
        self.host = host
        self.transports = tuple(transports)
        self.public_host = public_host or host
        self.rtp_host = rtp_host or host
        self.rtp_port_range = rtp_port_range
        self.user_agent = user_agent
        available = _available_codecs()
        self.codecs = [c.upper() for c in (codecs or available) if c.upper() in available]
        if not self.codecs:
            raise ValueError(f"no usable codec among {codecs} (available: {available})")
        self.on_incoming: IncomingHandler | None = None
        self.transport = TransportLayer(host, port, self.transports, self._on_message, public_host=self.public_host)
        self.transactions = TransactionManager(self.transport)
        self.calls: dict[tuple[str, str, str], Call] = {}
        self._challengers: dict[str, DigestChallenger] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
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
            c._end("closed")
        for task in list(self._tasks):
            task.cancel()
        self.transactions.close()
        await self.transport.close()
        self._started = False

    async def __aenter__(self) -> "SipEndpoint":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # helpers used by calls ---------------------------------------------------------------------------
    def _contact(self, transport: str, user: str = "parley") -> str:
        tp = ";transport=tcp" if transport == "tcp" else ""
        return f"<sip:{user}@{self.transport.contact_host()}{tp}>"

    def _challenger(self, realm: str) -> DigestChallenger:
        ch = self._challengers.get(realm)
        if ch is None:
            ch = self._challengers[realm] = DigestChallenger(realm)
        return ch

    def _register_call(self, call: Call) -> None:
        self.calls[call.dialog.id] = call

    def _forget_call(self, call: Call) -> None:
        self.calls.pop(call.dialog.id, None)

    async def _new_rtp(self, neg: Negotiated):  # type: ignore[no-untyped-def]
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

    async def _resolve(self, uri: SipUri, transport: str | None = None) -> tuple[str, tuple[str, int]]:
        tp = (transport or uri.params.get("transport") or self.transports[0]).lower()
        if tp not in self.transports:
            raise CallFailed(503, f"transport {tp} is not enabled")
        host, port = uri.address
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET)
            except OSError:
                infos = []
            if not infos:
                raise CallFailed(503, f"cannot resolve {host}") from None
            host = infos[0][4][0]
        return tp, (host, port)

    # sending requests ----------------------------------------------------------------------------
    def _stamp(self, req: SipRequest, transport: str) -> None:
        req.headers.remove("Via")
        req.headers.add("Via", self.transport.via_for(transport, new_branch()), first=True)
        if "User-Agent" not in req.headers:
            req.headers.add("User-Agent", self.user_agent)

    async def _target(self, req: SipRequest, dialog: Dialog | None, dest: SipUri | None) -> tuple[str, tuple[str, int]]:
        if dialog is not None:
            flow = dialog.flow
            if flow is not None and not dialog.route_set:
                if flow.transport == "tcp" and flow.conn and flow.conn.open:
                    return "tcp", flow.addr
                if flow.transport == "udp" and _behind_nat(dialog.remote_target, flow.addr):
                    return "udp", flow.addr
            hop = dialog.next_hop(req)
            return await self._resolve(hop, hop.params.get("transport") or dialog.transport)
        hop = dest or req.request_uri
        routes = req.headers.get_all("Route")
        if routes and dest is None:
            hop = NameAddr.parse(routes[0]).uri
        return await self._resolve(hop)

    async def request(
        self, req: SipRequest, dialog: Dialog | None = None, credentials: Credentials | None = None,
        dest: SipUri | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request and return its final response (answers one 401/407 with
        `credentials`). Raises TransactionTimeout when nothing final arrives within 64*T1."""
        transport, addr = await self._target(req, dialog, dest)
        tried_auth = 0
        while True:
            self._stamp(req, transport)
            resp = await self._transact(req, transport, addr)
            if resp.status in (401, 407) and credentials is not None and tried_auth < 2:
                header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
                challenge = pick_challenge(resp.headers.get_all(header))
                if challenge is None:
                    return resp
                stale = "stale=true" in challenge.replace(" ", "").lower()
                if tried_auth and not stale:
                    return resp
                tried_auth += 1
                self._authorize(req, resp.status, challenge, credentials)
                num, method = req.cseq
                num += 1
                if dialog is not None:
                    dialog.local_seq = max(dialog.local_seq, num)
                    num = dialog.local_seq
                req.headers.set("CSeq", f"{num} {method}")
                continue
            return resp

    @staticmethod
    def _authorize(req: SipRequest, status: int, challenge: str, credentials: Credentials) -> None:
        name = "Authorization" if status == 401 else "Proxy-Authorization"
        req.headers.remove(name)
        req.headers.add(name, answer_challenge(challenge, credentials, req.method, req.uri))

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
        transport, addr = await self._target(req, call.dialog, None)
        self._stamp(req, transport)
        fut: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()

        def on_response(resp: SipResponse) -> None:
            if resp.status < 200:
                return
            if resp.status < 300:
                ack = call.dialog.create_request("ACK", cseq=req.cseq[0])
                self._stamp(ack, transport)
                call.last_ack = ack.to_bytes()
                call.ack_dest = (transport, addr)
                self.transactions.send_bytes(call.last_ack, transport, addr)
                call.dialog.update_target(resp)
            if not fut.done():
                fut.set_result(resp)

        def on_timeout(why: str) -> None:
            if not fut.done():
                fut.set_result(None)

        tx = ClientTransaction(self.transactions, req, transport, addr, on_response, on_timeout)
        await tx.start()
        return await fut

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
        out = OutgoingCall(self, call_id)
        dialer = _Dialer(self, out, target, from_, auth, headers or {}, display_name, timeout, transport, proxy,
                         [c for c in (codecs or self.codecs) if c in self.codecs] or self.codecs)
        out._runner = dialer
        await dialer.start()
        return out

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
                if call is not None and call.last_ack is not None and call.ack_dest is not None:
                    self.transactions.send_bytes(call.last_ack, *call.ack_dest)
        except SipParseError:
            return

    def _response(self, req: SipRequest, status: int, reason: str | None = None, **kw: Any) -> SipResponse:
        resp = make_response(req, status, reason, **kw)
        resp.headers.add("Server", self.user_agent)
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
        tx = ServerTransaction(self.transactions, req, source)
        if req.method == "CANCEL":
            self._cancel(req, tx)
            return
        max_fwd = req.headers.get("Max-Forwards")
        if max_fwd is not None and max_fwd.strip() == "0" and req.method != "OPTIONS":
            tx.respond(self._response(req, 483))
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
        else:
            tx.respond(self._response(req, 405, to_tag=new_tag(), extra={"Allow": ALLOW}))

    def _dialog_call(self, req: SipRequest) -> Call | None:
        return self.calls.get((req.call_id, req.to.tag or "", req.from_.tag or ""))

    def _cancel(self, cancel: SipRequest, tx: ServerTransaction) -> None:
        invite_tx = self.transactions.match_cancel(cancel)
        if invite_tx is None:
            tx.respond(self._response(cancel, 481))
            return
        tx.respond(self._response(cancel, 200))
        if invite_tx.state == "proceeding":
            incoming = invite_tx.incoming
            if incoming is not None:
                incoming.cancelled.set()
                invite_tx.respond(incoming._respond(487))
            else:
                invite_tx.respond(self._response(invite_tx.request, 487, to_tag=new_tag()))
            log.info("sip.cancelled", call_id=cancel.call_id)

    def _incoming_invite(self, req: SipRequest, tx: ServerTransaction, source: Source) -> None:
        require = [r.strip().lower() for r in req.headers.get_all("Require")]
        unsupported = [r for r in require if r and r not in ("timer",)]
        if unsupported:
            tx.respond(self._response(req, 420, to_tag=new_tag(), extra={"Unsupported": ", ".join(unsupported)}))
            return
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
        self._spawn(self._run_handler(incoming))

    async def _run_handler(self, incoming: IncomingCall) -> None:
        assert self.on_incoming is not None
        try:
            await self.on_incoming(incoming)
        except CallFailed:
            pass
        except Exception as exc:
            log.exception("sip.incoming_handler_failed", call_id=incoming.call_id, error=str(exc))
            if not incoming.is_final and not incoming.cancelled.is_set():
                incoming.tx.respond(incoming._respond(500, "Server Internal Error"))
            return
        if not incoming.is_final and not incoming.cancelled.is_set():
            incoming.tx.respond(incoming._respond(480, "Temporarily Unavailable"))

    # registration --------------------------------------------------------------------------------
    def registration(self, registrar: str, aor: str, credentials: Credentials | None = None,
                     expires: int = 3600, transport: str | None = None):  # type: ignore[no-untyped-def]
        """A `Registration` (see parley.sip.register) bound to this endpoint; `await reg.start()`."""
        from parley.sip.register import Registration

        return Registration(self, registrar, aor, credentials, expires, transport)


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


class _Dialer:
    """The UAC side of one INVITE: auth retry, provisional handling, ACK, CANCEL, ring timeout."""

    def __init__(
        self, ep: SipEndpoint, out: OutgoingCall, target: SipUri, from_: str | None,
        auth: Credentials | None, headers: dict[str, str], display_name: str | None, timeout: float,
        transport: str | None, proxy: str | None, codecs: list[str],
    ) -> None:
        self.ep = ep
        self.out = out
        self.target = target
        self.from_ = from_
        self.auth = auth
        self.extra = headers
        self.display_name = display_name
        self.timeout = timeout
        self.transport_pref = transport
        self.proxy = SipUri.parse(proxy) if proxy else None
        self.codecs = codecs
        self.rtp: Any = None
        self.invite: SipRequest | None = None
        self.tx: ClientTransaction | None = None
        self.transport = "udp"
        self.addr: tuple[str, int] = ("127.0.0.1", 5060)
        self.provisional = False
        self.cancel_sent = False
        self.auth_tries = 0
        self.call: Call | None = None
        self.local_sdp: SessionDescription | None = None
        self._ring_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        ep = self.ep
        hop = self.proxy or self.target
        self.transport, self.addr = await ep._resolve(
            hop, self.transport_pref or self.target.params.get("transport") or hop.params.get("transport"))
        neg = Negotiated(self.codecs[0], {"PCMU": 0, "PCMA": 8, "G722": 9}[self.codecs[0]], 8000, 101, 20, "sendrecv", None)
        try:
            self.rtp = await ep._new_rtp(neg)
        except (OSError, RuntimeError) as exc:  # no free RTP port, socket limits
            raise CallFailed(503, f"Service Unavailable (no media port: {exc})") from exc
        self.local_sdp = build_offer(ep.media_address, self.rtp.local_port, self.codecs)
        user = self.from_ or f"sip:parley@{ep.public_host}"
        from_uri = SipUri.parse(user) if ":" in user else SipUri("sip", user, ep.public_host)
        h = Headers()
        if self.proxy is not None:
            h.add("Route", f"<{self.proxy.copy(params={**self.proxy.params, 'lr': None})}>")
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(from_uri, self.display_name, {"tag": new_tag()})))
        h.add("To", str(NameAddr(self.target.copy(params={k: v for k, v in self.target.params.items()
                                                          if k not in ("transport", "lr", "maddr")}))))
        h.add("Call-ID", self.out.call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", ep._contact(self.transport, from_uri.user or "parley"))
        h.add("Allow", ALLOW)
        h.add("Supported", "replaces")
        for k, v in self.extra.items():
            h.add(k, v)
        h.add("Content-Type", "application/sdp")
        self.invite = SipRequest(headers=h, body=self.local_sdp.to_bytes(), method="INVITE", uri=str(self.target))
        self._ring_timer = asyncio.get_running_loop().call_later(self.timeout, self._no_answer)
        await self._send_invite()

    async def _send_invite(self) -> None:
        assert self.invite is not None
        self.ep._stamp(self.invite, self.transport)
        self.provisional = False
        self.tx = ClientTransaction(self.ep.transactions, self.invite, self.transport, self.addr,
                                    self._on_response, self._on_timeout)
        await self.tx.start()

    def _no_answer(self) -> None:
        if self.out.done:
            return
        self.ep._spawn(self.cancel(code=408, reason="Request Timeout"))

    def _on_timeout(self, why: str) -> None:
        self._fail(408, "Request Timeout" if why == "timeout" else f"Service Unavailable ({why})")

    def _fail(self, code: int, reason: str) -> None:
        if self._ring_timer:
            self._ring_timer.cancel()
        if not self.out.done:
            self.out._fail(code, reason)
            log.info("sip.dial_failed", call_id=self.out.call_id, code=code, reason=reason)
        if self.rtp is not None and self.call is None:
            self.ep._spawn(self.rtp.close())

    def _on_response(self, resp: SipResponse) -> None:
        status = resp.status
        if status < 200:
            self.provisional = True
            if self.tx is not None:
                self.tx.timers.stop("timeout")  # a ringing call waits for the ring timeout, not Timer B
            if not self.out.done:
                self.out._progress(status, resp.reason)
            if self.out._cancel_requested and not self.cancel_sent:
                self._send_cancel()
            if status in (180, 183) and resp.body and resp.content_type == "application/sdp":
                self._early_media(resp)
            return
        if status < 300:
            self._answered(resp)
            return
        if status in (401, 407) and self.auth is not None and self.auth_tries < 2 and not self.out._cancel_requested:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            challenge = pick_challenge(resp.headers.get_all(header))
            stale = bool(challenge) and "stale=true" in challenge.replace(" ", "").lower()  # type: ignore[union-attr]
            if challenge and (self.auth_tries == 0 or stale):
                self.auth_tries += 1
                assert self.invite is not None
                self.out._progress(status, resp.reason, final=False)
                SipEndpoint._authorize(self.invite, status, challenge, self.auth)
                num = self.invite.cseq[0] + 1
                self.invite.headers.set("CSeq", f"{num} INVITE")
                self.ep._spawn(self._send_invite())
                return
        if self.out._cancel_requested and status == 487:
            self._fail(487, resp.reason or "Request Terminated")
            return
        self._fail(status, resp.reason)

    def _early_media(self, resp: SipResponse) -> None:
        try:
            neg = negotiate(SessionDescription.parse(resp.body), self.codecs)
        except SipParseError:
            return
        if neg and neg.remote:
            from parley.media.codecs import get_codec

            self.rtp.set_codec(get_codec(neg.codec), neg.telephone_event_pt)
            self.rtp.set_remote(*neg.remote)

    def _answered(self, resp: SipResponse) -> None:
        assert self.invite is not None
        to_tag = resp.to.tag or ""
        if self.call is not None:
            if to_tag == self.call.remote_tag:
                if self.call.last_ack and self.call.ack_dest:
                    self.ep.transactions.send_bytes(self.call.last_ack, *self.call.ack_dest)
                return
            self._ack_and_bye(resp)  # a second fork answered: ACK and hang it up
            return
        dialog = Dialog.from_uac(self.invite, resp, self.transport, self.invite.headers.get("Contact") or "")
        neg: Negotiated | None = None
        if resp.body:
            try:
                neg = negotiate(SessionDescription.parse(resp.body), self.codecs)
            except SipParseError:
                neg = None
        assert self.local_sdp is not None
        call = Call(self.ep, dialog, self.rtp, neg or Negotiated(self.codecs[0], 0, 8000, 101, 20, "sendrecv", None),
                    "outbound", self.local_sdp)
        call.credentials = self.auth
        self.call = call
        self.ep._register_call(call)
        self.ep._spawn(self._send_ack(call))
        call.confirmed.set()
        if self._ring_timer:
            self._ring_timer.cancel()
        if neg is None:
            log.info("sip.answer_unusable", call_id=call.call_id)
            self.out._progress(resp.status, resp.reason, final=False)
            self.ep._spawn(call.hangup())
            self._fail(488, "Not Acceptable Here (answer SDP unusable)")
            return
        from parley.media.codecs import get_codec

        self.rtp.set_codec(get_codec(neg.codec), neg.telephone_event_pt)
        if neg.remote:
            self.rtp.set_remote(*neg.remote)
        self.rtp.set_direction(neg.direction)
        if self.out._cancel_requested:
            self.ep._spawn(call.hangup())
            self._fail(487, "Request Terminated")
            return
        self.out._progress(resp.status, resp.reason)
        self.out._succeed(call)
        log.info("sip.call_answered", call_id=call.call_id, codec=neg.codec, remote_rtp=neg.remote)

    async def _send_ack(self, call: Call) -> None:
        """ACK the 2xx along the route set to the remote target (§13.2.2.4), resolved off the loop."""
        assert self.invite is not None
        ack = call.dialog.create_request("ACK", cseq=self.invite.cseq[0])
        try:
            transport, addr = await self.ep._target(ack, call.dialog, None)
        except CallFailed as exc:
            log.warning("sip.ack_unroutable", call_id=call.call_id, error=exc.reason)
            return
        self.ep._stamp(ack, transport)
        call.last_ack = ack.to_bytes()
        call.ack_dest = (transport, addr)
        self.ep.transactions.send_bytes(call.last_ack, transport, addr)

    def _ack_and_bye(self, resp: SipResponse) -> None:
        """A second fork answered after we took the first: ACK it, then hang it up."""
        assert self.invite is not None
        dialog = Dialog.from_uac(self.invite, resp, self.transport, "")
        self.ep._spawn(self._ack_then_bye(dialog))

    async def _ack_then_bye(self, dialog: Dialog) -> None:
        assert self.invite is not None
        ack = dialog.create_request("ACK", cseq=self.invite.cseq[0])
        try:
            transport, addr = await self.ep._target(ack, dialog, None)
            self.ep._stamp(ack, transport)
            self.ep.transactions.send_bytes(ack.to_bytes(), transport, addr)
            await self.ep.request(dialog.create_request("BYE"), dialog=dialog)
        except (CallFailed, TransactionTimeout, OSError) as exc:
            log.info("sip.extra_fork_bye_failed", call_id=dialog.call_id, error=str(exc))

    def _send_cancel(self) -> None:
        assert self.invite is not None
        self.cancel_sent = True
        h = Headers()
        h.add("Via", self.invite.headers.get_all("Via")[0])
        for r in self.invite.headers.get_all("Route"):
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            h.add(name, self.invite.headers.get(name) or "")
        h.add("CSeq", f"{self.invite.cseq[0]} CANCEL")
        h.add("User-Agent", self.ep.user_agent)
        cancel = SipRequest(headers=h, method="CANCEL", uri=self.invite.uri)
        tx = ClientTransaction(self.ep.transactions, cancel, self.transport, self.addr, lambda r: None, lambda w: None)
        self.ep._spawn(tx.start())
        # if the INVITE never gets its 487, give up after 64*T1
        asyncio.get_running_loop().call_later(64 * T1, self._fail, 487, "Request Terminated")

    async def cancel(self, code: int = 487, reason: str = "Request Terminated") -> None:
        self.out._cancel_requested = True
        if self.out.done:
            return
        # §9.1: CANCEL only after a provisional arrived; otherwise _on_response sends it on the first 1xx
        if self.provisional and not self.cancel_sent:
            self._send_cancel()
        if code != 487:
            self._fail(code, reason)
