"""SIP dialogs (RFC 3261 §12): identity, CSeq, remote target and route set; in-dialog requests.

Loose routing (§16.12): with a route set whose first entry has `;lr`, the Request-URI is the
remote target and the request goes to the first route; a strict router gets the Request-URI.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from parley.sip.errors import SipParseError
from parley.sip.message import Headers, SipRequest, SipResponse
from parley.sip.transport import Source
from parley.sip.uri import NameAddr, SipUri


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddr  # our From (as UAC) / To (as UAS) with our tag
    remote: NameAddr
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_seq: int = field(default_factory=lambda: random.randint(1, 2**20))
    remote_seq: int | None = None
    transport: str = "udp"
    contact: str = ""
    flow: Source | None = None  # where the dialog-creating request came from (TCP connection reuse)

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uas(cls, request: SipRequest, local_tag: str, transport: str, contact: str,
                 source: Source | None = None) -> "Dialog":
        """Dialog state for the callee (§12.1.1): route set = Record-Route in order. Without a
        Contact (RFC 2543 style) the remote target is where the request came from, never the From
        URI (a name the caller chose: it would send our BYE elsewhere, after a DNS lookup)."""
        remote_contact = request.contact
        if remote_contact is not None:
            target = remote_contact.uri
        elif source is not None:
            params: dict[str, str | None] = {"transport": "tcp"} if source.transport == "tcp" else {}
            target = SipUri(scheme="sip", user=request.from_.uri.user if request.from_.uri.scheme in ("sip", "sips")
                            else None, host=source.addr[0], port=source.addr[1], params=params)
        else:
            raise SipParseError("no Contact and no source to reach the caller")
        to = request.to
        to.params["tag"] = local_tag
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local=to,
            remote=request.from_,
            remote_target=target,
            route_set=list(request.headers.get_all("Record-Route")),
            remote_seq=request.cseq[0],
            transport=transport,
            contact=contact,
        )

    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse, transport: str, contact: str) -> "Dialog":
        """Dialog state for the caller (§12.1.2): route set = Record-Route reversed."""
        remote_contact = response.contact
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local=request.from_,
            remote=response.to,
            remote_target=remote_contact.uri if remote_contact else request.request_uri,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_seq=request.cseq[0],
            transport=transport,
            contact=contact,
        )

    def update_target(self, message: SipRequest | SipResponse) -> None:
        """A target refresh (re-INVITE, its 2xx) may move the remote Contact."""
        contact = message.contact
        if contact is not None:
            self.remote_target = contact.uri

    def create_request(
        self, method: str, body: bytes = b"", content_type: str | None = None,
        extra: dict[str, str] | None = None, cseq: int | None = None,
    ) -> SipRequest:
        """A request inside this dialog (§12.2.1.1). The Via is added by the endpoint when sent."""
        if cseq is None:
            if method not in ("ACK", "CANCEL"):
                self.local_seq += 1
            cseq = self.local_seq
        h = Headers()
        uri = str(self.remote_target)
        routes = list(self.route_set)
        if routes and ";lr" not in routes[0].lower():
            # strict routing: first route becomes the Request-URI, remote target goes last
            first = NameAddr.parse(routes[0]).uri
            routes = routes[1:] + [f"<{uri}>"]
            uri = str(first)
        for r in routes:
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local))
        h.add("To", str(self.remote))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method}")
        if self.contact and method in ("INVITE", "REFER", "NOTIFY", "UPDATE", "SUBSCRIBE"):
            h.add("Contact", self.contact)
        for k, v in (extra or {}).items():
            h.add(k, v)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        return SipRequest(headers=h, body=body, method=method, uri=uri)

    def next_hop(self, request: SipRequest) -> SipUri:
        """The URI whose host/port/transport the request is sent to (§8.1.2)."""
        routes = request.headers.get_all("Route")
        if routes:
            return NameAddr.parse(routes[0]).uri
        return SipUri.parse(request.uri)

    def check_remote_cseq(self, request: SipRequest) -> bool:
        """False for an out-of-order request (answer 500, §12.2.2)."""
        num = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and num <= self.remote_seq:
            return False
        self.remote_seq = num
        return True
