"""REGISTER client (RFC 3261 §10): binds our Contact at a registrar, answers digest challenges,
and refreshes before the granted expiry runs out."""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from parley.logging import get_logger
from parley.sip.auth import Credentials
from parley.sip.dialog import Dialog
from parley.sip.errors import SipParseError, TransactionTimeout
from parley.sip.message import Headers, SipRequest, SipResponse
from parley.sip.transaction import new_tag
from parley.sip.uri import NameAddr, SipUri

log = get_logger(__name__)


class RegistrationHost(Protocol):
    """What a `Registration` needs from its user agent (`SipEndpoint`)."""

    public_host: str
    transports: tuple[str, ...]

    @property
    def port(self) -> int: ...

    def contact(self, transport: str, user: str = "parley") -> str: ...

    async def request(
        self, req: SipRequest, dialog: Dialog | None = None, credentials: Credentials | None = None,
        dest: SipUri | None = None,
    ) -> SipResponse: ...


class Registration:
    """Keeps one address-of-record registered. `await start()` registers (raises `RegistrationError`
    on a final failure) and then refreshes in the background; `await stop()` unregisters."""

    def __init__(
        self, endpoint: RegistrationHost, registrar: str, aor: str, credentials: Credentials | None = None,
        expires: int = 3600, transport: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.registrar = SipUri.parse(registrar)
        self.aor = SipUri.parse(aor)
        self.credentials = credentials
        self.expires = expires
        self.transport = transport
        self.call_id = f"{os.urandom(10).hex()}@{endpoint.public_host}"
        self.tag = new_tag()
        self.cseq = 0
        self.granted: int | None = None
        self.registered = asyncio.Event()
        self.refreshes = 0
        self._task: asyncio.Task[None] | None = None

    def _request(self, expires: int) -> SipRequest:
        self.cseq += 1
        tp = self.transport or self.registrar.params.get("transport") or self.endpoint.transports[0]
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(self.aor, None, {"tag": self.tag})))
        h.add("To", str(NameAddr(self.aor)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", self.endpoint.contact(tp, self.aor.user or "parley"))
        h.add("Expires", str(expires))
        uri = self.registrar.copy(user=None, params={k: v for k, v in self.registrar.params.items() if k == "transport"})
        return SipRequest(headers=h, method="REGISTER", uri=str(uri))

    async def register_once(self, expires: int | None = None) -> int:
        """One REGISTER round (with auth); returns the granted expiry in seconds."""
        want = self.expires if expires is None else expires
        req = self._request(want)
        resp = await self.endpoint.request(req, credentials=self.credentials, dest=self.registrar)
        self.cseq = req.cseq[0]
        if not 200 <= resp.status < 300:
            raise RegistrationError(resp.status, resp.reason)
        granted = want
        for value in resp.headers.get_all("Contact"):
            try:
                na = NameAddr.parse(value)
            except SipParseError:
                continue
            ours = na.uri.host == self.endpoint.public_host and na.uri.port == self.endpoint.port
            contact_expires = (na.params.get("expires") or "").strip()
            if ours and contact_expires.isdigit():
                granted = int(contact_expires)
        header_expires = (resp.headers.get("Expires") or "").strip()
        if header_expires.isdigit() and granted == want:
            granted = int(header_expires)
        return granted

    async def start(self) -> None:
        self.granted = await self.register_once()
        self.registered.set()
        log.info("sip.registered", aor=str(self.aor), expires=self.granted)
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    def refresh_delay(self) -> float:
        """Refresh at half the expiry for short ones, 30 s before it for long ones."""
        granted = self.granted or self.expires
        return max(1.0, min(granted / 2, granted - 30))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_delay())
            try:
                self.granted = await self.register_once()
                self.refreshes += 1
                self.registered.set()
            except (RegistrationError, TransactionTimeout, OSError) as exc:
                self.registered.clear()
                log.warning("sip.register_failed", aor=str(self.aor), error=str(exc))
                await asyncio.sleep(min(30.0, self.refresh_delay()))

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (Expires: 0)."""
        if self._task:
            self._task.cancel()
        try:
            await self.register_once(0)
        except (RegistrationError, TransactionTimeout, OSError) as exc:
            log.info("sip.unregister_failed", error=str(exc))
        self.registered.clear()


class RegistrationError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"REGISTER failed: {code} {reason}")
        self.code = code
        self.reason = reason
