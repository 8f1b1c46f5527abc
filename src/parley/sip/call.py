"""Calls as the rest of Parley sees them: `IncomingCall` (before answer) and `Call` (an established
dialog with its `RtpSession`). The caller's side of an INVITE, `OutgoingCall`, is in `invite_client`.

In-dialog requests handled here: BYE, re-INVITE (hold/resume, media change), OPTIONS, INFO (DTMF),
REFER and NOTIFY (RFC 3515 blind transfer, both directions).

Calls reach their user agent (`SipEndpoint`) only through the `CallHost` protocol below.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from parley.logging import get_logger
from parley.sip.auth import Credentials, DigestChallenger
from parley.sip.dialog import Dialog
from parley.sip.dtmf import DtmfError, parse_dtmf_info
from parley.sip.errors import CallFailed, SipParseError
from parley.sip.guard import FailureThrottle
from parley.sip.message import Headers, SipRequest, SipResponse, make_response
from parley.sip.sdp import Negotiated, SessionDescription, build_answer, build_offer, negotiate
from parley.sip.transaction import ServerTransaction, SipTimers, new_tag
from parley.sip.transport import Source
from parley.sip.uri import NameAddr, SipUri
from parley.support.taskset import TaskSet

if TYPE_CHECKING:
    from parley.sip.rtp_session import RtpSession

log = get_logger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY"


class CallHost(Protocol):
    """What a call needs from the user agent that owns it (`SipEndpoint` is the implementation)."""

    user_agent: str
    server_header: str | None
    codecs: list[str]
    timers: SipTimers

    @property
    def media_address(self) -> str: ...

    def contact(self, transport: str, user: str = "parley") -> str: ...

    def challenger(self, realm: str) -> DigestChallenger: ...

    @property
    def auth_throttle(self) -> FailureThrottle: ...

    async def new_rtp(self, negotiated: Negotiated) -> RtpSession: ...

    def register_call(self, call: Call) -> None: ...

    def forget_call(self, call: Call) -> None: ...

    async def request(
        self, req: SipRequest, dialog: Dialog | None = None, credentials: Credentials | None = None,
        dest: SipUri | None = None,
    ) -> SipResponse: ...

    async def invite_in_dialog(self, call: Call, req: SipRequest) -> SipResponse | None: ...

    def send_response(self, response: SipResponse, source: Source | None) -> None: ...


def media_port(rtp: RtpSession) -> int:
    """The local port of a started RTP session (what our SDP announces)."""
    if rtp.local_port is None:
        raise RuntimeError("RtpSession.start() first: it has no local port yet")
    return rtp.local_port


class Call:
    """An established call: one dialog plus its RTP session."""

    def __init__(
        self, host: CallHost, dialog: Dialog, rtp: RtpSession, negotiated: Negotiated,
        direction: str, local_sdp: SessionDescription,
    ) -> None:
        self.host = host
        self.dialog = dialog
        self.rtp = rtp
        self.negotiated = negotiated
        self.direction = direction  # "inbound" | "outbound"
        self.local_sdp = local_sdp
        self.on_refer: Callable[[str], Awaitable[bool]] | None = None
        self.on_dtmf: Callable[[str], Any] | None = None
        self.on_hold_change: Callable[[bool], Any] | None = None
        self.remote_hold = False
        self.local_hold = False
        self.end_reason: str | None = None
        self._ended = asyncio.Event()
        self.confirmed = asyncio.Event()  # ACK received (inbound) or sent (outbound)
        self._dtmf_queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._transfer_result: asyncio.Future[bool] | None = None
        self._pending_2xx: tuple[SipResponse, Source | None] | None = None
        self._retransmit_handle: asyncio.TimerHandle | None = None
        self._tasks = TaskSet("sip.call")  # handler callbacks, NOTIFYs, closing the RTP session
        self.last_ack: bytes | None = None  # our ACK for the 2xx, re-sent if the 2xx comes again
        self.ack_dest: tuple[str, tuple[str, int]] | None = None  # (transport, addr) it went to
        self.credentials: Credentials | None = None  # used again if the peer challenges our BYE
        rtp.on_dtmf = lambda digit: self._dtmf(digit, "rfc4733")

    # identity --------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    @property
    def local_tag(self) -> str:
        return self.dialog.local_tag

    @property
    def remote_tag(self) -> str:
        return self.dialog.remote_tag

    @property
    def remote_uri(self) -> SipUri:
        return self.dialog.remote.uri

    @property
    def local_uri(self) -> SipUri:
        return self.dialog.local.uri

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def on_hold(self) -> bool:
        return self.remote_hold or self.local_hold

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.call_id} {self.remote_uri} ended={self.end_reason}>"

    # DTMF --------------------------------------------------------------------------------------
    def _dtmf(self, digit: str, source: str) -> None:
        if self.ended:
            return
        log.info("sip.dtmf", call_id=self.call_id, digit=digit, source=source)
        self._dtmf_queue.put_nowait(digit)
        if self.on_dtmf is not None:
            result = self.on_dtmf(digit)
            if asyncio.iscoroutine(result):
                self._tasks.spawn(result)

    async def dtmf_events(self) -> AsyncIterator[str]:
        """Digits as they arrive (RFC 4733 events and SIP INFO), until the call ends."""
        while True:
            digit = await self._dtmf_queue.get()
            if digit is None:
                return
            yield digit

    async def send_dtmf(self, digits: str) -> None:
        """Send digits as RFC 4733 events (falls back to SIP INFO when none was negotiated)."""
        if self.negotiated.telephone_event_pt is not None:
            await self.rtp.send_dtmf(digits)
            return
        for digit in digits:
            req = self.dialog.create_request(
                "INFO", body=f"Signal={digit}\r\nDuration=160\r\n".encode(), content_type="application/dtmf-relay",
            )
            await self.host.request(req, dialog=self.dialog)

    # ending ------------------------------------------------------------------------------------
    async def hangup(self) -> None:
        """Send BYE (or nothing if the call already ended). Idempotent."""
        if self.ended:
            return
        self.end("local_bye")
        req = self.dialog.create_request("BYE")
        try:
            await self.host.request(req, dialog=self.dialog, credentials=self.credentials)
        except Exception as exc:
            log.info("sip.bye_failed", call_id=self.call_id, error=str(exc))

    async def wait_ended(self) -> str:
        """Wait until the call ends; returns why: remote_bye, local_bye, ack_timeout, closed."""
        await self._ended.wait()
        return self.end_reason or "ended"

    def end(self, reason: str) -> None:
        """Mark the call ended here, without signalling (`hangup()` sends the BYE), and free its media."""
        if self.ended:
            return
        self.end_reason = reason
        self._ended.set()
        self._stop_2xx_retransmit()
        self._dtmf_queue.put_nowait(None)
        if self._transfer_result is not None and not self._transfer_result.done():
            self._transfer_result.set_result(False)
        self.host.forget_call(self)
        self._tasks.spawn(self.rtp.close())
        log.info("sip.call_ended", call_id=self.call_id, reason=reason)

    # 2xx retransmission until ACK (§13.3.1.4) ------------------------------------------------------
    def send_2xx(self, tx: ServerTransaction, response: SipResponse) -> None:
        """Answer `tx` with `response` and re-send it until the ACK arrives (BYE after 64*T1 without)."""
        self.confirmed.clear()
        tx.respond(response)
        self._pending_2xx = (response, tx.source)
        t1 = self.host.timers.t1
        if tx.source.transport == "udp":
            self._schedule_2xx(t1, 0.0)
        else:
            self._schedule_2xx(64 * t1, 64 * t1)

    def _schedule_2xx(self, interval: float, elapsed: float) -> None:
        loop = asyncio.get_running_loop()
        self._retransmit_handle = loop.call_later(interval, self._retransmit_2xx, interval, elapsed + interval)

    def _retransmit_2xx(self, interval: float, elapsed: float) -> None:
        if self._pending_2xx is None or self.ended:
            return
        if elapsed >= 64 * self.host.timers.t1:
            log.info("sip.no_ack", call_id=self.call_id)
            self._pending_2xx = None
            self._tasks.spawn(self._bye_after_no_ack())
            return
        response, source = self._pending_2xx
        self.host.send_response(response, source)
        self._schedule_2xx(min(interval * 2, self.host.timers.t2), elapsed)

    async def _bye_after_no_ack(self) -> None:
        self.end("ack_timeout")
        req = self.dialog.create_request("BYE")
        try:
            await self.host.request(req, dialog=self.dialog)
        except Exception:
            pass

    def _stop_2xx_retransmit(self) -> None:
        self._pending_2xx = None
        if self._retransmit_handle is not None:
            self._retransmit_handle.cancel()
            self._retransmit_handle = None

    def _ack_received(self, request: SipRequest) -> None:
        self._stop_2xx_retransmit()
        if request.body and request.content_type == "application/sdp":
            try:
                self._apply_remote_sdp(SessionDescription.parse(request.body))
            except SipParseError:
                pass
        self.confirmed.set()

    # in-dialog requests --------------------------------------------------------------------------
    def handle_request(self, request: SipRequest, tx: ServerTransaction | None) -> None:
        """An in-dialog request (ACK comes without a transaction)."""
        if request.method == "ACK" or tx is None:
            self._ack_received(request)
            return
        if not self.dialog.check_remote_cseq(request):
            tx.respond(self._response(request, 500, "Server Internal Error (CSeq out of order)"))
            return
        method = request.method
        if method == "BYE":
            tx.respond(self._response(request, 200))
            self.end("remote_bye")
        elif method == "INVITE":
            self._reinvite(request, tx)
        elif method == "OPTIONS":
            tx.respond(self._response(request, 200, extra={"Allow": ALLOW, "Accept": "application/sdp"}))
        elif method == "INFO":
            self._info(request, tx)
        elif method == "REFER":
            self._refer_received(request, tx)
        elif method == "NOTIFY":
            self._notify_received(request, tx)
        elif method == "UPDATE":
            tx.respond(self._response(request, 501, extra={"Allow": ALLOW}))
        else:
            tx.respond(self._response(request, 405, extra={"Allow": ALLOW}))

    def _response(self, request: SipRequest, status: int, reason: str | None = None, **kw: Any) -> SipResponse:
        resp = make_response(request, status, reason, **kw)
        if self.host.server_header:
            resp.headers.add("Server", self.host.server_header)
        return resp

    def _apply_remote_sdp(self, sdp: SessionDescription) -> Negotiated | None:
        neg = negotiate(sdp, self.host.codecs)
        if neg is None:
            return None
        from parley.media.codecs import get_codec

        if neg.codec != self.negotiated.codec or neg.telephone_event_pt != self.negotiated.telephone_event_pt:
            self.rtp.set_codec(get_codec(neg.codec), neg.telephone_event_pt)
        hold = neg.direction in ("recvonly", "inactive") or (neg.remote is not None and neg.remote[0] == "0.0.0.0")
        if neg.remote and neg.remote[0] != "0.0.0.0":
            self.rtp.set_remote(*neg.remote)
        our = neg.direction
        if self.local_hold:
            our = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(our, our)
        self.rtp.set_direction(our)
        if hold != self.remote_hold:
            self.remote_hold = hold
            log.info("sip.hold" if hold else "sip.resume", call_id=self.call_id)
            if self.on_hold_change is not None:
                result = self.on_hold_change(hold)
                if asyncio.iscoroutine(result):
                    self._tasks.spawn(result)
        self.negotiated = neg
        return neg

    def _reinvite(self, request: SipRequest, tx: ServerTransaction) -> None:
        tx.respond(self._response(request, 100))
        self.dialog.update_target(request)
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
            except SipParseError as exc:
                tx.respond(self._response(request, 400, f"Bad Request ({exc})"))
                return
            neg = self._apply_remote_sdp(offer)
            if neg is None:
                tx.respond(self._response(request, 488, extra={"Warning": '304 parley "no common codec"'}))
                return
            self.local_sdp.session_version += 1
            answer = build_answer(
                offer, neg, self.local_sdp.origin_address, media_port(self.rtp),
                session_id=self.local_sdp.session_id, version=self.local_sdp.session_version,
                direction=self._our_direction(neg.direction),
            )
        else:
            self.local_sdp.session_version += 1
            answer = self.local_sdp
        resp = self._response(request, 200, to_tag=self.local_tag, body=answer.to_bytes(),
                              extra={"Contact": self.dialog.contact, "Allow": ALLOW})
        self.send_2xx(tx, resp)

    def _our_direction(self, answered: str) -> str:
        if not self.local_hold:
            return answered
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(answered, answered)

    def _info(self, request: SipRequest, tx: ServerTransaction) -> None:
        """INFO is answered 200 whatever it carries; a DTMF body (dtmf-relay or dtmf) gives a digit."""
        tx.respond(self._response(request, 200))
        try:
            info = parse_dtmf_info(request.content_type, request.body)
        except DtmfError:
            return
        self._dtmf(info.digit, "info")

    # transfer (RFC 3515) -------------------------------------------------------------------------
    def _refer_received(self, request: SipRequest, tx: ServerTransaction) -> None:
        refer_to = request.headers.get("Refer-To")
        if not refer_to:
            tx.respond(self._response(request, 400, "Bad Request (missing Refer-To)"))
            return
        if self.on_refer is None:
            tx.respond(self._response(request, 603, "Decline"))
            return
        try:
            target = str(NameAddr.parse(refer_to).uri)
        except SipParseError as exc:
            tx.respond(self._response(request, 400, f"Bad Request ({exc})"))
            return
        tx.respond(self._response(request, 202, to_tag=self.local_tag, extra={"Contact": self.dialog.contact}))
        self._tasks.spawn(self._run_refer(target))

    async def _run_refer(self, target: str) -> None:
        await self._notify_sipfrag("SIP/2.0 100 Trying", "active;expires=60")
        assert self.on_refer is not None
        try:
            ok = bool(await self.on_refer(target))
        except Exception as exc:
            log.warning("sip.refer_handler_failed", call_id=self.call_id, error=str(exc))
            ok = False
        frag = "SIP/2.0 200 OK" if ok else "SIP/2.0 503 Service Unavailable"
        await self._notify_sipfrag(frag, "terminated;reason=noresource")

    async def _notify_sipfrag(self, frag: str, state: str) -> None:
        if self.ended:
            return
        req = self.dialog.create_request(
            "NOTIFY", body=(frag + "\r\n").encode(), content_type="message/sipfrag;version=2.0",
            extra={"Event": "refer", "Subscription-State": state},
        )
        try:
            await self.host.request(req, dialog=self.dialog)
        except Exception as exc:
            log.info("sip.notify_failed", call_id=self.call_id, error=str(exc))

    def _notify_received(self, request: SipRequest, tx: ServerTransaction) -> None:
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            tx.respond(self._response(request, 489, "Bad Event"))
            return
        tx.respond(self._response(request, 200))
        m = re.match(r"\s*SIP/2\.0\s+(\d{3})", request.body.decode("utf-8", "replace"))
        if m and self._transfer_result is not None and not self._transfer_result.done():
            code = int(m.group(1))
            if code >= 200:
                self._transfer_result.set_result(200 <= code < 300)

    async def transfer(self, target: str, timeout: float = 30.0) -> bool:
        """Blind transfer: REFER the peer to `target`; True when its NOTIFY reports a 2xx."""
        if self.ended:
            return False
        uri = target if ":" in target else f"sip:{target}@{self.remote_uri.host}"
        self._transfer_result = asyncio.get_running_loop().create_future()
        req = self.dialog.create_request(
            "REFER", extra={"Refer-To": f"<{uri}>", "Referred-By": f"<{self.local_uri}>"},
        )
        try:
            resp = await self.host.request(req, dialog=self.dialog)
        except Exception as exc:
            log.info("sip.refer_failed", call_id=self.call_id, error=str(exc))
            return False
        if not 200 <= resp.status < 300:
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(self._transfer_result), timeout)
        except asyncio.TimeoutError:
            return False

    # hold ----------------------------------------------------------------------------------------
    async def hold(self, on: bool = True) -> bool:
        """Put the peer on hold (re-INVITE with a=sendonly) or resume it (a=sendrecv)."""
        self.local_hold = on
        self.local_sdp.session_version += 1
        audio = self.local_sdp.media[0]
        audio.direction = "sendonly" if on else "sendrecv"
        req = self.dialog.create_request("INVITE", body=self.local_sdp.to_bytes())
        resp = await self.host.invite_in_dialog(self, req)
        if resp is None or not 200 <= resp.status < 300:
            return False
        if resp.body:
            try:
                self._apply_remote_sdp(SessionDescription.parse(resp.body))
            except SipParseError:
                pass
        self.rtp.set_direction("sendonly" if on else "sendrecv")
        return True


class IncomingCall:
    """An INVITE waiting for the application's decision: accept, reject, redirect (ring first if you like)."""

    def __init__(self, host: CallHost, request: SipRequest, tx: ServerTransaction, source: Source,
                 offer: SessionDescription | None) -> None:
        self.host = host
        self.request = request
        self.tx = tx
        self.source = source
        self.offer = offer
        self.local_tag = new_tag()
        self.cancelled = asyncio.Event()
        self.answered = False
        self.call: Call | None = None

    # request info ------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def from_uri(self) -> SipUri:
        return self.request.from_.uri

    @property
    def from_display_name(self) -> str | None:
        return self.request.from_.display_name

    @property
    def to_uri(self) -> SipUri:
        return self.request.to.uri

    @property
    def request_uri(self) -> SipUri:
        return self.request.request_uri

    @property
    def called_number(self) -> str:
        """The number dialled: the Request-URI user part, else the To user."""
        return self.request_uri.user or self.to_uri.user or ""

    @property
    def caller_number(self) -> str:
        return self.from_uri.user or ""

    @property
    def source_address(self) -> tuple[str, int]:
        return self.source.addr

    @property
    def transport(self) -> str:
        return self.source.transport

    @property
    def headers(self) -> Headers:
        """All request headers (`.get(name)`, `.get_all(name)`)."""
        return self.request.headers

    @property
    def is_final(self) -> bool:
        return self.answered or self.tx.state != "proceeding"

    # decisions ---------------------------------------------------------------------------------
    def _respond(self, status: int, reason: str | None = None, **kw: Any) -> SipResponse:
        resp = make_response(self.request, status, reason, to_tag=self.local_tag if status > 100 else None, **kw)
        if self.host.server_header:
            resp.headers.add("Server", self.host.server_header)
        return resp

    def cancelled_by_peer(self) -> None:
        """A CANCEL matched this INVITE: answer it 487 (the application sees `cancelled`)."""
        self.cancelled.set()
        self.tx.respond(self._respond(487))

    def no_decision(self) -> None:
        """Nobody answered or rejected the INVITE in time (Timer L): tell the caller 480."""
        self.tx.respond(self._respond(480, "Temporarily Unavailable (no answer)"))

    def _check_open(self) -> None:
        if self.cancelled.is_set():
            raise CallFailed(487, "Request Terminated")
        if self.is_final:
            raise CallFailed(500, "call already answered or rejected")

    async def ring(self) -> None:
        """Send 180 Ringing."""
        self._check_open()
        self.tx.respond(self._respond(180, extra={"Contact": self.host.contact(self.transport)}))

    async def reject(self, code: int = 486, reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Refuse the call with a final 3xx-6xx status."""
        if not 300 <= code <= 699:
            raise ValueError("reject code must be 300..699")
        if self.is_final or self.cancelled.is_set():
            return
        self.tx.respond(self._respond(code, reason, extra=headers))

    async def redirect(self, uri: str, code: int = 302) -> None:
        """Send the caller elsewhere (302 Moved Temporarily with Contact)."""
        target = uri if uri.startswith("<") else f"<{uri}>"
        await self.reject(code, None, {"Contact": target})

    async def check_auth(
        self, realm: str, lookup: Callable[[str], str | None], proxy: bool = False,
    ) -> str | None:
        """Digest-check the INVITE (RFC 7616). Returns the authenticated username, or sends
        401/407 (no, stale or replayed credentials) or 403 (wrong user/password, digest for another
        Request-URI) and returns None. Failures are throttled per source IP and per username
        (`SipLimits`): after a few, each 403 comes later, then the source or user is refused at
        once for a while; a block is logged once per episode."""
        challenger = self.host.challenger(realm)
        throttle = self.host.auth_throttle
        ip = self.source.addr[0]
        header = "Proxy-Authorization" if proxy else "Authorization"
        verdict = "missing"
        username = None
        for value in self.request.headers.get_all(header):
            verdict, username = challenger.check(value, self.request.method, lookup,
                                                 request_uri=self.request.uri, source=ip)
            if verdict != "missing":
                break
        keys = [f"ip:{ip}"] + ([f"user:{username}"] if username else [])
        now = time.monotonic()
        verdicts = [throttle.verdict(k, now) for k in keys]
        blocked = [k for k, v in zip(keys, verdicts) if v.blocked]
        if blocked:
            for k, v in zip(keys, verdicts):
                if v.announce:
                    log.warning("sip.auth_blocked", key=k[:80], call_id=self.call_id[:80])
            await self.reject(403, "Forbidden")
            return None
        if verdict == "ok":
            for k in keys:
                throttle.succeeded(k)
            return username
        if verdict == "wrong":
            for k in keys:
                throttle.failed(k, now)
            delay = max(v.delay for v in verdicts)
            if delay:
                await asyncio.sleep(delay)
            await self.reject(403, "Forbidden")
            return None
        status = 407 if proxy else 401
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        resp = self._respond(status)
        for ch in challenger.challenges(stale=verdict == "stale", source=ip):
            resp.headers.add(name, ch)
        if not self.is_final:
            self.tx.respond(resp)
        return None

    async def accept(self, codecs: list[str] | None = None) -> Call:
        """Answer 200 OK with an SDP answer; returns the established `Call`.
        Raises CallFailed(488) (after answering 488) when no offered codec is acceptable."""
        self._check_open()
        ep = self.host
        supported = [c for c in (codecs or ep.codecs) if c in ep.codecs]
        offer = self.offer
        if offer is None:
            # late offer: we offer in the 200, the ACK carries the answer
            neg = Negotiated.for_offer(supported[0])
        else:
            found = negotiate(offer, supported)
            if found is None:
                await self.reject(488, "Not Acceptable Here")
                raise CallFailed(488, "Not Acceptable Here")
            neg = found
        try:
            rtp = await ep.new_rtp(neg)
        except (OSError, RuntimeError) as exc:  # no free RTP port, socket limits
            log.warning("sip.no_media_port", call_id=self.call_id, error=str(exc))
            await self.reject(503, "Service Unavailable (no media port)")
            raise CallFailed(503, "Service Unavailable (no media port)") from exc
        if self.cancelled.is_set() or self.is_final:
            await rtp.close()
            raise CallFailed(487, "Request Terminated")
        if offer is None:
            local_sdp = build_offer(ep.media_address, media_port(rtp), supported)
        else:
            local_sdp = build_answer(offer, neg, ep.media_address, media_port(rtp))
        dialog = Dialog.from_uas(self.request, self.local_tag, self.transport, ep.contact(self.transport),
                                 source=self.source)
        dialog.flow = self.source
        call = Call(ep, dialog, rtp, neg, "inbound", local_sdp)
        self.call = call
        self.answered = True
        ep.register_call(call)
        resp = self._respond(200, body=local_sdp.to_bytes(), extra={"Contact": dialog.contact, "Allow": ALLOW})
        call.send_2xx(self.tx, resp)
        log.info("sip.answered", call_id=self.call_id, codec=neg.codec, remote_rtp=neg.remote)
        return call

