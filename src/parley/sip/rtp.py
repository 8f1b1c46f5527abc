"""RTP packets (RFC 3550 §5.1): parse and serialise.

    pkt = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0x1234, payload=b"...", marker=True)
    data = pkt.serialize()         # or rtp_bytes(pt, seq, ts, ssrc, payload, marker) for plain packets
    pkt = parse_rtp(data)          # RtpError on anything that is not a well-formed RTP v2 packet
    is_rtcp(data)                  # True for RTCP (PT 200..206 in the second byte, RFC 5761 §4)

Padding is removed on parse (its length is validated); CSRCs and the header extension are kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["RTP_VERSION", "RtpError", "RtpPacket", "is_rtcp", "parse_rtp", "rtp_bytes", "seq_diff"]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; `payload` excludes padding."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: list[int] = field(default_factory=list)
    extension: tuple[int, bytes] | None = None  # (profile-defined id, data whose length is a multiple of 4)
    padding: int = 0  # padding octets to add on serialise (parsed packets report what was present)

    def serialize(self) -> bytes:
        """The packet on the wire."""
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} out of range 0..127")
        if len(self.csrcs) > 15:
            raise RtpError("at most 15 CSRCs")
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            _HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF)
        ]
        parts.extend(struct.pack("!I", c & 0xFFFFFFFF) for c in self.csrcs)
        if self.extension is not None:
            ext_id, ext_data = self.extension
            if len(ext_data) % 4:
                raise RtpError("header extension length must be a multiple of 4 octets")
            parts.append(struct.pack("!HH", ext_id, len(ext_data) // 4) + ext_data)
        parts.append(self.payload)
        if self.padding:
            if not 1 <= self.padding <= 255:
                raise RtpError("padding must be 1..255 octets")
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def rtp_bytes(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> bytes:
    """The wire form of a plain packet (no CSRC, extension or padding): the sender's fast path."""
    return (
        _HEADER.pack(0x80, (0x80 | payload_type) if marker else payload_type, sequence, timestamp, ssrc)
        + payload
    )


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP packet; raise RtpError with the reason when it is malformed."""
    data = bytes(data)
    if len(data) < 12:
        raise RtpError(f"too short for an RTP header: {len(data)} octets")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 == 0x80:  # the common case: no padding, extension or CSRCs
        return RtpPacket(b1 & 0x7F, seq, ts, ssrc, data[12:], bool(b1 & 0x80))
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    cc = b0 & 0x0F
    offset = 12 + 4 * cc
    if len(data) < offset:
        raise RtpError("truncated CSRC list")
    csrcs = list(struct.unpack_from(f"!{cc}I", data, 12)) if cc else []
    extension = None
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        ext_id, ext_words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * ext_words
        if len(data) < end:
            raise RtpError("header extension longer than the packet")
        extension = (ext_id, data[offset + 4 : end])
        offset = end
    end = len(data)
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > len(data):
            raise RtpError(f"bad padding length {padding}")
        end -= padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=data[offset:end],
        marker=bool(b1 & 0x80),
        csrcs=csrcs,
        extension=extension,
        padding=padding,
    )


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True when a datagram looks like RTCP rather than RTP (version 2, packet type 200..206)."""
    return len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 206


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000
