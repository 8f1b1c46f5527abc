"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one audio stream.

We offer and accept G.711 (PCMU, PCMA), G.722 when a codec for it is available, and
telephone-event (RFC 4733). An offer with no usable audio format is answered 488.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from parley.sip.errors import SipParseError

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
#: The audio codecs we can offer, with their static payload types (RFC 3551). The one payload-type table.
PAYLOAD_TYPES: dict[str, int] = {"PCMU": 0, "PCMA": 8, "G722": 9}
#: Static payload types we know by number when no rtpmap is given: pt -> (name, RTP clock).
STATIC: dict[int, tuple[str, int]] = {pt: (name, 8000) for name, pt in PAYLOAD_TYPES.items()}
TELEPHONE_EVENT_PT = 101  # the dynamic payload type we offer for RFC 4733 events
PTIME_MS = 20


@dataclass
class MediaFormat:
    pt: int
    name: str
    clock: int
    fmtp: str | None = None


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[MediaFormat] = field(default_factory=list)
    connection: str | None = None
    direction: str = "sendrecv"
    ptime: int | None = None
    other: list[str] = field(default_factory=list)

    def format(self, name: str) -> MediaFormat | None:
        for f in self.formats:
            if f.name.upper() == name.upper():
                return f
        return None


@dataclass
class SessionDescription:
    origin_user: str = "-"
    session_id: int = 0
    session_version: int = 0
    origin_address: str = "127.0.0.1"
    name: str = "-"
    connection: str | None = None
    direction: str = "sendrecv"
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> "SessionDescription":
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        sd = cls()
        current: MediaDescription | None = None
        rtpmaps: dict[int, tuple[str, int]] = {}
        fmtps: dict[int, str] = {}
        pts: list[int] = []

        def finish() -> None:
            if current is None:
                return
            for pt in pts:
                name, clock = rtpmaps.get(pt) or STATIC.get(pt) or (f"PT{pt}", 8000)
                current.formats.append(MediaFormat(pt, name, clock, fmtps.get(pt)))

        seen_version = False
        for raw in text.replace("\r\n", "\n").split("\n"):
            line = raw.strip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise SipParseError(f"bad SDP line {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "v":
                seen_version = True
            elif kind == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise SipParseError("bad SDP o= line")
                sd.origin_user = parts[0]
                sd.session_id = int(parts[1]) if parts[1].isdigit() else 0
                sd.session_version = int(parts[2]) if parts[2].isdigit() else 0
                sd.origin_address = parts[5]
            elif kind == "s":
                sd.name = value
            elif kind == "c":
                parts = value.split()
                if len(parts) != 3 or parts[0] != "IN":
                    raise SipParseError("bad SDP c= line")
                addr = parts[2].split("/")[0]
                if current is None:
                    sd.connection = addr
                else:
                    current.connection = addr
            elif kind == "m":
                finish()
                parts = value.split()
                if len(parts) < 3:
                    raise SipParseError("bad SDP m= line")
                port_text = parts[1].split("/")[0]
                if not port_text.isdigit() or int(port_text) > 65535:
                    raise SipParseError("bad SDP media port")
                current = MediaDescription(parts[0], int(port_text), parts[2], direction=sd.direction)
                rtpmaps, fmtps = {}, {}
                try:
                    pts = [int(p) for p in parts[3:]] if "RTP" in parts[2] else []
                except ValueError:
                    raise SipParseError("bad SDP payload type") from None
                sd.media.append(current)
            elif kind == "a":
                name, _, arg = value.partition(":")
                if name in DIRECTIONS:
                    if current is None:
                        sd.direction = name
                    else:
                        current.direction = name
                elif current is None:
                    continue
                elif name == "rtpmap":
                    pt_text, _, enc = arg.partition(" ")
                    enc_name, _, rest = enc.partition("/")
                    clock_text = rest.split("/")[0]
                    if pt_text.isdigit() and clock_text.isdigit():
                        rtpmaps[int(pt_text)] = (enc_name, int(clock_text))
                elif name == "fmtp":
                    pt_text, _, params = arg.partition(" ")
                    if pt_text.isdigit():
                        fmtps[int(pt_text)] = params
                elif name == "ptime" and arg.strip().isdigit():
                    current.ptime = int(arg.strip())
                else:
                    current.other.append(value)
        finish()
        if not seen_version:
            raise SipParseError("SDP without v= line")
        return sd

    def audio(self) -> MediaDescription | None:
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None

    def remote_rtp(self) -> tuple[str, int] | None:
        """(address, port) where the peer wants audio, from the audio m= and c= lines."""
        audio = self.audio()
        if audio is None:
            return None
        host = audio.connection or self.connection
        return (host, audio.port) if host else None

    def to_bytes(self) -> bytes:
        lines = [
            "v=0",
            f"o={self.origin_user} {self.session_id} {self.session_version} IN IP4 {self.origin_address}",
            f"s={self.name}",
        ]
        if self.connection:
            lines.append(f"c=IN IP4 {self.connection}")
        lines.append("t=0 0")
        for m in self.media:
            pts = " ".join(str(f.pt) for f in m.formats) or "0"
            lines.append(f"m={m.media} {m.port} {m.proto} {pts}")
            if m.connection and m.connection != self.connection:
                lines.append(f"c=IN IP4 {m.connection}")
            for f in m.formats:
                lines.append(f"a=rtpmap:{f.pt} {f.name}/{f.clock}")
                if f.fmtp:
                    lines.append(f"a=fmtp:{f.pt} {f.fmtp}")
            if m.ptime:
                lines.append(f"a=ptime:{m.ptime}")
            lines.append(f"a={m.direction}")
        return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Negotiated:
    """What both sides agreed for the audio stream."""

    codec: str
    pt: int
    clock: int
    telephone_event_pt: int | None
    ptime: int
    direction: str  # our direction: sendrecv / sendonly / recvonly / inactive
    remote: tuple[str, int] | None

    @classmethod
    def for_offer(cls, codec: str) -> "Negotiated":
        """The media settings of our own offer with `codec` first, used until the answer arrives."""
        return cls(codec, PAYLOAD_TYPES[codec], 8000, TELEPHONE_EVENT_PT, PTIME_MS, "sendrecv", None)


_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def _session_id() -> int:
    return int(time.time() * 1000) & 0x7FFFFFFF


def build_offer(
    address: str, port: int, codecs: list[str], telephone_event_pt: int = TELEPHONE_EVENT_PT,
    ptime: int = PTIME_MS,
    direction: str = "sendrecv", session_id: int | None = None, version: int = 0,
) -> SessionDescription:
    """Our offer: `codecs` in order of preference plus telephone-event 0-16."""
    formats = [MediaFormat(PAYLOAD_TYPES[c], c, 8000) for c in codecs if c in PAYLOAD_TYPES]
    formats.append(MediaFormat(telephone_event_pt, "telephone-event", 8000, "0-16"))
    sid = session_id if session_id is not None else _session_id()
    return SessionDescription(
        origin_user="parley", session_id=sid, session_version=version, origin_address=address,
        name="parley", connection=address,
        media=[MediaDescription("audio", port, "RTP/AVP", formats, direction=direction, ptime=ptime)],
    )


def negotiate(offer: SessionDescription, supported: list[str]) -> Negotiated | None:
    """Pick the first offered codec we support (RFC 3264 §6); None means answer 488."""
    audio = offer.audio()
    if audio is None or "RTP/AVP" not in audio.proto or "SAVP" in audio.proto:
        return None
    chosen: MediaFormat | None = None
    for f in audio.formats:
        if f.name.upper() in supported and f.clock == 8000:
            chosen = f
            break
    if chosen is None:
        return None
    te = next((f.pt for f in audio.formats if f.name.lower() == "telephone-event" and f.clock == 8000), None)
    direction = _ANSWER_DIRECTION.get(audio.direction, "sendrecv")
    return Negotiated(
        codec=chosen.name.upper(), pt=chosen.pt, clock=chosen.clock, telephone_event_pt=te,
        ptime=audio.ptime or PTIME_MS, direction=direction, remote=offer.remote_rtp(),
    )


def build_answer(
    offer: SessionDescription, neg: Negotiated, address: str, port: int,
    session_id: int | None = None, version: int = 0, direction: str | None = None,
) -> SessionDescription:
    """Answer with one m= line per offered one; non-chosen streams get port 0 (RFC 3264 §6)."""
    media: list[MediaDescription] = []
    chosen_done = False
    for m in offer.media:
        if not chosen_done and m is offer.audio():
            formats = [MediaFormat(neg.pt, neg.codec, neg.clock)]
            if neg.telephone_event_pt is not None:
                formats.append(MediaFormat(neg.telephone_event_pt, "telephone-event", 8000, "0-16"))
            media.append(MediaDescription(
                "audio", port, m.proto, formats, direction=direction or neg.direction, ptime=neg.ptime,
            ))
            chosen_done = True
        else:
            media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1], direction="inactive"))
    sid = session_id if session_id is not None else _session_id()
    return SessionDescription(
        origin_user="parley", session_id=sid, session_version=version, origin_address=address,
        name="parley", connection=address, media=media,
    )
