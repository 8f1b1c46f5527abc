"""RTCP (RFC 3550 §6): sender/receiver reports, SDES CNAME, BYE; receiver statistics (§A.1, A.3, A.8).

    packets = parse_rtcp(data)            # list of SenderReport / ReceiverReport / SourceDescription / Bye
    data = build_compound([sr_or_rr, SourceDescription([(ssrc, cname)])])
    stats = ReceptionStats(clock_rate=8000)
    kind = stats.update(seq, rtp_timestamp, arrival_monotonic)   # "new" | "duplicate" | "reordered" | "jump" | "restart"
    block = stats.report_block(ssrc, now)  # ReportBlock for our next SR/RR (fraction lost since the last one)

Unknown RTCP packet types inside a compound packet (APP, feedback, XR) are skipped; malformed data
raises RtcpError.
"""

from __future__ import annotations

import struct
import time
from array import array
from dataclasses import dataclass, field

__all__ = [
    "Bye",
    "ReceiverReport",
    "ReceptionStats",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "RtcpReport",
    "SenderReport",
    "SourceDescription",
    "build_compound",
    "ntp_middle",
    "ntp_now",
    "parse_rtcp",
]

PT_SR, PT_RR, PT_SDES, PT_BYE = 200, 201, 202, 203
_NTP_EPOCH_OFFSET = 2208988800
_RTP_SEQ_MOD = 1 << 16
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100


class RtcpError(ValueError):
    """A datagram that is not valid RTCP."""


@dataclass(slots=True)
class ReportBlock:
    """Reception report about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255, fraction of 256 lost since the previous report
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number received
    jitter: int  # interarrival jitter in RTP timestamp units
    lsr: int = 0  # middle 32 bits of the NTP time of the last SR received from that source
    dlsr: int = 0  # delay since that SR, in 1/65536 s

    def pack(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return struct.pack(
            "!IIIIII",
            self.ssrc & 0xFFFFFFFF,
            ((self.fraction_lost & 0xFF) << 24) | lost,
            self.highest_seq & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, offset)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)

    def pack(self) -> bytes:
        body = struct.pack(
            "!IQIII",
            self.ssrc & 0xFFFFFFFF,
            self.ntp_timestamp & 0xFFFFFFFFFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        return _packet(PT_SR, len(self.reports), body + b"".join(r.pack() for r in self.reports))


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)

    def pack(self) -> bytes:
        body = struct.pack("!I", self.ssrc & 0xFFFFFFFF) + b"".join(r.pack() for r in self.reports)
        return _packet(PT_RR, len(self.reports), body)


@dataclass(slots=True)
class SourceDescription:
    chunks: list[tuple[int, str]]  # (ssrc, CNAME)

    def pack(self) -> bytes:
        body = b""
        for ssrc, cname in self.chunks:
            text = cname.encode()[:255]
            chunk = struct.pack("!IBB", ssrc & 0xFFFFFFFF, 1, len(text)) + text + b"\x00"
            chunk += bytes(-len(chunk) % 4)
            body += chunk
        return _packet(PT_SDES, len(self.chunks), body)


@dataclass(slots=True)
class Bye:
    ssrcs: list[int]
    reason: str = ""

    def pack(self) -> bytes:
        body = b"".join(struct.pack("!I", s & 0xFFFFFFFF) for s in self.ssrcs)
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _packet(PT_BYE, len(self.ssrcs), body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


def _packet(pt: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtcpError("RTCP body must be a multiple of 4 octets")
    return struct.pack("!BBH", 0x80 | (count & 0x1F), pt, len(body) // 4) + body


def build_compound(packets: list[RtcpPacket]) -> bytes:
    """Serialise packets into one compound RTCP datagram (first must be SR or RR, RFC 3550 §6.1)."""
    return b"".join(p.pack() for p in packets)


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram; RtcpError when malformed. Unknown packet types are skipped."""
    data = bytes(data)
    if len(data) < 8:
        raise RtcpError(f"too short for RTCP: {len(data)} octets")
    out: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtcpError("truncated RTCP header")
        b0, pt, words = struct.unpack_from("!BBH", data, offset)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6}, expected 2")
        end = offset + 4 + 4 * words
        if end > len(data):
            raise RtcpError("RTCP length field beyond the datagram")
        count = b0 & 0x1F
        body_end = end
        if b0 & 0x20:  # padding, only legal on the last packet
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise RtcpError("bad RTCP padding")
            body_end -= pad
        body = data[offset + 4 : body_end]
        if pt == PT_SR:
            if len(body) < 24 + 24 * count:
                raise RtcpError("truncated sender report")
            ssrc, ntp, rtp_ts, pc, oc = struct.unpack_from("!IQIII", body)
            blocks = [ReportBlock.unpack(body, 24 + 24 * i) for i in range(count)]
            out.append(SenderReport(ssrc, ntp, rtp_ts, pc, oc, blocks))
        elif pt == PT_RR:
            if len(body) < 4 + 24 * count:
                raise RtcpError("truncated receiver report")
            (ssrc,) = struct.unpack_from("!I", body)
            out.append(ReceiverReport(ssrc, [ReportBlock.unpack(body, 4 + 24 * i) for i in range(count)]))
        elif pt == PT_SDES:
            out.append(SourceDescription(_parse_sdes(body, count)))
        elif pt == PT_BYE:
            if len(body) < 4 * count:
                raise RtcpError("truncated BYE")
            ssrcs = list(struct.unpack_from(f"!{count}I", body))
            reason = ""
            rest = body[4 * count :]
            if rest:
                n = rest[0]
                reason = rest[1 : 1 + n].decode("utf-8", "replace")
            out.append(Bye(ssrcs, reason))
        offset = end
    return out


def _parse_sdes(body: bytes, count: int) -> list[tuple[int, str]]:
    chunks: list[tuple[int, str]] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise RtcpError("truncated SDES chunk")
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        cname = ""
        while pos < len(body) and body[pos] != 0:
            if pos + 2 > len(body):
                raise RtcpError("truncated SDES item")
            kind, n = body[pos], body[pos + 1]
            if pos + 2 + n > len(body):
                raise RtcpError("SDES item longer than the packet")
            if kind == 1:
                cname = body[pos + 2 : pos + 2 + n].decode("utf-8", "replace")
            pos += 2 + n
        pos += 1  # the terminating null item
        pos += -pos % 4
        chunks.append((ssrc, cname))
    return chunks


def ntp_now(wallclock: float | None = None) -> int:
    """64-bit NTP timestamp for `wallclock` (default now)."""
    t = time.time() if wallclock is None else wallclock
    seconds = int(t) + _NTP_EPOCH_OFFSET
    return (seconds << 32) | int((t - int(t)) * (1 << 32))


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (LSR / RTT arithmetic)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(slots=True, frozen=True)
class RtcpReport:
    """One RTCP report as seen in stats: from the peer (received) or from us (sent)."""

    kind: str  # "SR" or "RR"
    ssrc: int
    at: float  # when sent/received, on the session's monotonic clock
    sender_packets: int | None = None  # SR only
    sender_octets: int | None = None
    fraction_lost: float | None = None  # 0..1, from the report block about the other side's stream
    cumulative_lost: int | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None  # round trip from LSR/DLSR (received reports only)


#: Sequence numbers remembered for duplicate detection: a packet is a duplicate when the last one received
#: in its slot (extended sequence number modulo this) had the same number. 2 KB per source; a set and a deque
#: of the last 256 numbers cost ~40 KB per call (the set's table alone ~32 KB).
DUPLICATE_WINDOW = 256


def _no_sequences_seen() -> array[int]:
    return array("q", [-1]) * DUPLICATE_WINDOW


class ReceptionStats:
    """Per-source receiver statistics: sequence tracking, loss, duplicates, jitter (RFC 3550 A.1/A.3/A.8)."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.jitter = 0.0  # RTP timestamp units
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = _RTP_SEQ_MOD + 1
        self._expected_prior = 0
        self._received_prior = 0
        self._last_transit: float | None = None
        self._seen = _no_sequences_seen()
        self.last_sr_ntp_middle = 0
        self.last_sr_at: float | None = None

    def reset(self, ssrc: int, seq: int) -> None:
        """Start over for a new source."""
        self.ssrc = ssrc
        self._init_seq(seq)
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_transit = None
        self.jitter = 0.0

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._bad_seq = _RTP_SEQ_MOD + 1
        self._seen = _no_sequences_seen()

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max_seq

    def extend(self, seq: int) -> int:
        """Extended sequence number of `seq`, taken as the one nearest the highest seen so far."""
        delta = ((seq - self._max_seq + 0x8000) & 0xFFFF) - 0x8000
        return self.extended_max + delta

    @property
    def expected(self) -> int:
        return self.extended_max - self._base_seq + 1 if self.ssrc is not None else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (expected - received; late arrivals count as received)."""
        return max(0, self.expected - self.received) if self.ssrc is not None else 0

    def update(self, seq: int, timestamp: int | None, arrival: float) -> str:
        """Account one packet: "new", "reordered", "duplicate", "jump" (a big jump: drop it) or "restart"
        (a second packet in sequence after a jump: the sender restarted its numbering; start over)."""
        udelta = (seq - self._max_seq) & 0xFFFF
        ext = self.extend(seq)
        if self._seen[ext % DUPLICATE_WINDOW] == ext:
            self.duplicates += 1
            return "duplicate"
        kind = "new"
        if udelta < _MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += _RTP_SEQ_MOD
            self._max_seq = seq
            ext = self.extended_max
        elif udelta <= _RTP_SEQ_MOD - _MAX_MISORDER:
            if seq == self._bad_seq:
                self._init_seq(seq)  # two in a row: the sender restarted its sequence
                self.received = 0
                self._expected_prior = self._received_prior = 0
                self._last_transit = None
                ext = self.extended_max
                kind = "restart"
            else:
                self._bad_seq = (seq + 1) & 0xFFFF
                return "jump"
        else:
            kind = "reordered"
            self.reordered += 1
        self.received += 1
        self._seen[ext % DUPLICATE_WINDOW] = ext
        if timestamp is not None:
            transit = arrival * self.clock_rate - timestamp
            if self._last_transit is not None:
                d = abs(transit - self._last_transit)
                if d < 1 << 30:  # timestamp wrap or jump: skip this sample
                    self.jitter += (d - self.jitter) / 16.0
            self._last_transit = transit
        return kind

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def report_block(self, now: float) -> ReportBlock:
        """A report block for our next SR/RR; resets the 'since last report' interval."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = (
            (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        )
        dlsr = int((now - self.last_sr_at) * 65536) if self.last_sr_at is not None else 0
        return ReportBlock(
            ssrc=self.ssrc or 0,
            fraction_lost=min(fraction, 255),
            cumulative_lost=expected - self.received,
            highest_seq=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr_ntp_middle,
            dlsr=dlsr if self.last_sr_at is not None else 0,
        )
