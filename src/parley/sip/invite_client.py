"""The caller's side of one INVITE (RFC 3261 §13.2, §17.1.1): `OutgoingCall` is what the application
holds, `InviteClient` drives it — digest retry, provisional responses and early media, ACK for the
2xx, CANCEL (§9.1), a second fork answering, and the ring timeout.

    client = InviteClient(host, call_id, target, options)
    await client.start()                  # resolves, opens the RTP port, sends the INVITE
    call = await client.outgoing.answered()

`host` is the owning user agent (`SipEndpoint`), seen through the `InviteHost` protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from parley.logging import get_logger
from parley.sip.auth import Credentials, DigestRetry
from parley.sip.call import ALLOW, Call, CallHost, media_port
from parley.sip.dialog import Dialog
from parley.sip.errors import CallFailed, SipParseError, TransactionTimeout
from parley.sip.message import Headers, SipRequest, SipResponse
from parley.sip.sdp import Negotiated, SessionDescription, build_offer, negotiate
from parley.sip.transaction import ClientTransaction, TransactionManager, new_tag
from parley.sip.uri import NameAddr, SipUri

if TYPE_CHECKING:
    from parley.sip.rtp_session import RtpSession

log = get_logger(__name__)

Route = tuple[str, tuple[str, int]]  # (transport, (host, port))


class InviteHost(CallHost, Protocol):
    """What an INVITE client needs from its user agent besides what a `Call` needs."""

    public_host: str
    transactions: TransactionManager

    async def resolve(self, uri: SipUri, transport: str | None = None) -> Route: ...

    async def route(self, request: SipRequest, dialog: Dialog | None, dest: SipUri | None) -> Route: ...

    def stamp(self, request: SipRequest, transport: str) -> None: ...

    def send_ack(self, call: Call | None, ack: SipRequest, transport: str, addr: tuple[str, int]) -> None: ...

    def resend_ack(self, call: Call) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]: ...


@dataclass(frozen=True)
class Progress:
    """One step of an outgoing call: a SIP status (100/180/183/200/4xx…) or 408 for a timeout.
    `final` is False for provisionals and for a 401/407 we answer with credentials."""

    code: int
    reason: str
    final: bool = False


@dataclass
class DialOptions:
    """How to place one call (see `SipEndpoint.invite`)."""

    from_: str | None = None
    auth: Credentials | None = None
    headers: dict[str, str] = field(default_factory=dict)
    display_name: str | None = None
    timeout: float = 60.0
    transport: str | None = None
    proxy: str | None = None
    codecs: list[str] = field(default_factory=list)


class OutgoingCall:
    """A call we are dialling. Iterate it for `Progress`, or `await answered()` for the `Call`.

    `report`, `succeed` and `fail` are the INVITE client's side; the application reads."""

    def __init__(self, call_id: str, cancel: Callable[[], Awaitable[None]]) -> None:
        self.call_id = call_id
        self.on_progress: Callable[[Progress], Any] | None = None
        self.history: list[Progress] = []
        self._queue: asyncio.Queue[Progress] = asyncio.Queue()
        self._result: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
        self._cancel = cancel

    def report(self, code: int, reason: str, final: bool | None = None) -> None:
        """Record one step (final defaults to: code >= 200) and tell `on_progress`."""
        p = Progress(code, reason, code >= 200 if final is None else final)
        self.history.append(p)
        self._queue.put_nowait(p)
        if self.on_progress is not None:
            try:
                self.on_progress(p)
            except Exception as exc:
                log.warning("sip.progress_callback_failed", error=str(exc))

    def succeed(self, call: Call) -> None:
        if not self._result.done():
            self._result.set_result(call)

    def fail(self, code: int, reason: str) -> None:
        """Report the final failure and make `answered()` raise CallFailed(code, reason)."""
        if not self._result.done():
            self.report(code, reason)
            self._result.set_exception(CallFailed(code, reason))
            self._result.exception()  # mark retrieved; answered() re-raises

    def __aiter__(self) -> AsyncIterator[Progress]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Progress]:
        while True:
            p = await self._queue.get()
            yield p
            if p.final:
                return

    @property
    def done(self) -> bool:
        return self._result.done()

    async def answered(self) -> Call:
        """The established call, or CallFailed(code, reason) (408 on timeout, 487 if cancelled)."""
        return await asyncio.shield(self._result)

    async def cancel(self) -> None:
        """CANCEL the INVITE (§9.1); a 200 that crosses it is ACKed and hung up."""
        await self._cancel()


class InviteClient:
    """The UAC side of one INVITE: auth retry, provisional handling, ACK, CANCEL, ring timeout."""

    def __init__(self, host: InviteHost, call_id: str, target: SipUri, options: DialOptions) -> None:
        self.host = host
        self.target = target
        self.options = options
        self.proxy = SipUri.parse(options.proxy) if options.proxy else None
        self.codecs = options.codecs or host.codecs
        self.outgoing = OutgoingCall(call_id, self.cancel)
        self.rtp: RtpSession | None = None
        self.invite: SipRequest | None = None
        self.tx: ClientTransaction | None = None
        self.transport = "udp"
        self.addr: tuple[str, int] = ("127.0.0.1", 5060)
        self.provisional = False
        self.cancel_requested = False
        self.cancel_sent = False
        self.digest = DigestRetry(options.auth)
        self.call: Call | None = None
        self.local_sdp: SessionDescription | None = None
        self._ring_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Resolve the next hop, open the RTP port, send the INVITE; CallFailed(503) without a media port."""
        host, opts = self.host, self.options
        hop = self.proxy or self.target
        self.transport, self.addr = await host.resolve(
            hop, opts.transport or self.target.params.get("transport") or hop.params.get("transport"))
        try:
            self.rtp = await host.new_rtp(Negotiated.for_offer(self.codecs[0]))
        except (OSError, RuntimeError) as exc:  # no free RTP port, socket limits
            raise CallFailed(503, f"Service Unavailable (no media port: {exc})") from exc
        self.local_sdp = build_offer(host.media_address, media_port(self.rtp), self.codecs)
        user = opts.from_ or f"sip:parley@{host.public_host}"
        from_uri = SipUri.parse(user) if ":" in user else SipUri("sip", user, host.public_host)
        h = Headers()
        if self.proxy is not None:
            h.add("Route", f"<{self.proxy.copy(params={**self.proxy.params, 'lr': None})}>")
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(from_uri, opts.display_name, {"tag": new_tag()})))
        h.add("To", str(NameAddr(self.target.copy(params={k: v for k, v in self.target.params.items()
                                                          if k not in ("transport", "lr", "maddr")}))))
        h.add("Call-ID", self.outgoing.call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", host.contact(self.transport, from_uri.user or "parley"))
        h.add("Allow", ALLOW)
        h.add("Supported", "replaces")
        for k, v in opts.headers.items():
            h.add(k, v)
        h.add("Content-Type", "application/sdp")
        self.invite = SipRequest(headers=h, body=self.local_sdp.to_bytes(), method="INVITE",
                                 uri=str(self.target))
        self._ring_timer = asyncio.get_running_loop().call_later(opts.timeout, self._no_answer)
        await self._send_invite()

    async def _send_invite(self) -> None:
        assert self.invite is not None
        self.host.stamp(self.invite, self.transport)
        self.provisional = False
        self.tx = ClientTransaction(self.host.transactions, self.invite, self.transport, self.addr,
                                    self._on_response, self._on_timeout)
        await self.tx.start()

    def _no_answer(self) -> None:
        if self.outgoing.done:
            return
        self.host.spawn(self.cancel(code=408, reason="Request Timeout"))

    def _on_timeout(self, why: str) -> None:
        self._fail(408, "Request Timeout" if why == "timeout" else f"Service Unavailable ({why})")

    def _fail(self, code: int, reason: str) -> None:
        if self._ring_timer:
            self._ring_timer.cancel()
        if not self.outgoing.done:
            self.outgoing.fail(code, reason)
            log.info("sip.dial_failed", call_id=self.outgoing.call_id, code=code, reason=reason)
        if self.rtp is not None and self.call is None:
            self.host.spawn(self.rtp.close())

    def _on_response(self, resp: SipResponse) -> None:
        status = resp.status
        if status < 200:
            self.provisional = True
            if self.tx is not None:
                self.tx.timers.stop("timeout")  # a ringing call waits for the ring timeout, not Timer B
            if not self.outgoing.done:
                self.outgoing.report(status, resp.reason)
            if self.cancel_requested and not self.cancel_sent:
                self._send_cancel()
            if status in (180, 183) and resp.body and resp.content_type == "application/sdp":
                self._early_media(resp)
            return
        if status < 300:
            self._answered(resp)
            return
        assert self.invite is not None
        if not self.cancel_requested and self.digest.authorize(self.invite, resp):
            self.outgoing.report(status, resp.reason, final=False)
            self.host.spawn(self._send_invite())
            return
        if self.cancel_requested and status == 487:
            self._fail(487, resp.reason or "Request Terminated")
            return
        self._fail(status, resp.reason)

    def _apply_answer(self, neg: Negotiated) -> None:
        from parley.media.codecs import get_codec

        assert self.rtp is not None
        self.rtp.set_codec(get_codec(neg.codec), neg.telephone_event_pt)
        if neg.remote:
            self.rtp.set_remote(*neg.remote)

    def _early_media(self, resp: SipResponse) -> None:
        try:
            neg = negotiate(SessionDescription.parse(resp.body), self.codecs)
        except SipParseError:
            return
        if neg and neg.remote:
            self._apply_answer(neg)

    def _answered(self, resp: SipResponse) -> None:
        assert self.invite is not None and self.rtp is not None and self.local_sdp is not None
        to_tag = resp.to.tag or ""
        if self.call is not None:
            if to_tag == self.call.remote_tag:
                self.host.resend_ack(self.call)
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
        call = Call(self.host, dialog, self.rtp, neg or Negotiated.for_offer(self.codecs[0]), "outbound",
                    self.local_sdp)
        call.credentials = self.options.auth
        self.call = call
        self.host.register_call(call)
        self.host.spawn(self._send_ack(call))
        call.confirmed.set()
        if self._ring_timer:
            self._ring_timer.cancel()
        if neg is None:
            log.info("sip.answer_unusable", call_id=call.call_id)
            self.outgoing.report(resp.status, resp.reason, final=False)
            self.host.spawn(call.hangup())
            self._fail(488, "Not Acceptable Here (answer SDP unusable)")
            return
        self._apply_answer(neg)
        self.rtp.set_direction(neg.direction)
        if self.cancel_requested:
            self.host.spawn(call.hangup())
            self._fail(487, "Request Terminated")
            return
        self.outgoing.report(resp.status, resp.reason)
        self.outgoing.succeed(call)
        log.info("sip.call_answered", call_id=call.call_id, codec=neg.codec, remote_rtp=neg.remote)

    async def _send_ack(self, call: Call) -> None:
        """ACK the 2xx along the route set to the remote target (§13.2.2.4), resolved off the loop."""
        assert self.invite is not None
        ack = call.dialog.create_request("ACK", cseq=self.invite.cseq[0])
        try:
            transport, addr = await self.host.route(ack, call.dialog, None)
        except CallFailed as exc:
            log.warning("sip.ack_unroutable", call_id=call.call_id, error=exc.reason)
            return
        self.host.send_ack(call, ack, transport, addr)

    def _ack_and_bye(self, resp: SipResponse) -> None:
        """A second fork answered after we took the first: ACK it, then hang it up."""
        assert self.invite is not None
        dialog = Dialog.from_uac(self.invite, resp, self.transport, "")
        self.host.spawn(self._ack_then_bye(dialog))

    async def _ack_then_bye(self, dialog: Dialog) -> None:
        assert self.invite is not None
        ack = dialog.create_request("ACK", cseq=self.invite.cseq[0])
        try:
            transport, addr = await self.host.route(ack, dialog, None)
            self.host.send_ack(None, ack, transport, addr)
            await self.host.request(dialog.create_request("BYE"), dialog=dialog)
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
        if self.host.user_agent:
            h.add("User-Agent", self.host.user_agent)
        cancel = SipRequest(headers=h, method="CANCEL", uri=self.invite.uri)
        tx = ClientTransaction(self.host.transactions, cancel, self.transport, self.addr,
                               lambda r: None, lambda w: None)
        self.host.spawn(tx.start())
        # if the INVITE never gets its 487, give up after 64*T1
        asyncio.get_running_loop().call_later(64 * self.host.transactions.timers.t1, self._fail, 487,
                                              "Request Terminated")

    async def cancel(self, code: int = 487, reason: str = "Request Terminated") -> None:
        """Stop dialling: CANCEL once a provisional arrived (§9.1), or as soon as one does."""
        self.cancel_requested = True
        if self.outgoing.done:
            return
        if self.provisional and not self.cancel_sent:
            self._send_cancel()
        if code != 487:
            self._fail(code, reason)
