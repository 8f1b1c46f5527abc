"""One RTP media session: paced sender, jitter-buffered receiver, RTCP, RFC 4733 DTMF, symmetric RTP.

    s = RtpSession(bind_host, port_range=(20000, 30000), codec=get_codec("PCMU"), telephone_event_pt=101,
                   ptime_ms=20, port=None, *, send_silence=True, jitter_target_ms=60, jitter_max_ms=300,
                   jitter_min_ms=20,
                   rtcp_interval=5.0, cname=None, clock=MONOTONIC)
    await s.start()                      # binds an even RTP port in [lo, hi) (or exactly `port=`), RTCP on +1;
                                         # OSError naming the range when no pair is free
    s.local_port                         # for our SDP
    s.set_remote("203.0.113.5", 40000)   # from the peer's SDP (c= / m=); "0.0.0.0" or port 0 means none
    s.set_remote_rtcp(host, port)        # only for SDP a=rtcp:PORT or a=rtcp-mux (default: RTP port + 1)
    s.set_codec(get_codec("PCMA"), 101)  # after (re-)negotiation; same codec again is a no-op
    s.set_direction("sendrecv")          # "sendrecv" | "sendonly" | "recvonly" | "inactive" (OUR direction)
    pcm = await s.read_frame()           # one ptime of int16 PCM at s.sample_rate; None once closed
    s.write(pcm)                         # queue int16 mono PCM at s.sample_rate for sending
    s.clear_output() -> int              # barge-in: drop queued audio now; returns samples dropped
    s.output_queued_ms                   # audio still queued (float ms)
    await s.send_dtmf("123#", duration_ms=100)
    s.on_dtmf = lambda digit: ...        # called once per received key press (an async one runs as a task)
    s.stats() -> RtpStats                # counters, see RtpStats
    s.sample_rate, s.frame_samples       # 8000/160 (G.711) or 16000/320 (G.722) at 20 ms
    s.codec, s.telephone_event_pt, s.remote, s.direction, s.closed
    await s.close()

Bad arguments raise ValueError (RtpSessionError for calls in the wrong state); received garbage never
raises. `read_frame` has one consumer; `write` may be called from anywhere on the loop. `clock` is
the time source of pacing, latching and RTCP (tests pass one they move by hand; see sip/clock.py).

This class owns the two sockets and wires three parts together, each with the details of its contract:
`RtpSender` (sip/rtp_sender.py) driven by the shared `Pacer` (sip/pacer.py), `RtpReceiver`
(sip/rtp_receiver.py, latching in sip/symmetric_rtp.py) and `RtcpReporter` (sip/rtcp_reporter.py).

Receiving. `read_frame` is paced by the same drift-free clock as the sender: the n-th call returns n
ticks (n * ptime) after the first with exactly one frame, whatever arrived — decoded audio, loss
concealment, or silence when nothing arrives (before the first packet, on hold, during a peer's silence
suppression), so the consumer's timeline (VAD, STT, recordings) keeps running. A consumer that falls
more than 25 frames behind is resynchronised instead of being handed a burst. Before `start()` it raises
RtpSessionError. Packets are validated (version 2, padding/CSRC/extension lengths, payload type = our
codec, either G.711 law when our codec is 8 kHz G.711, telephone-event or comfort noise, non-empty);
anything else is counted in `stats().invalid` and dropped, never raised. The first valid packet latches
the media destination onto its real source address (symmetric RTP, so audio goes where the peer's RTP
really comes from, not where its SDP said); a different source takes over only after the latched one has
been silent for 1 s and the new one has sent 3 packets in sequence, or after `set_remote` is called with
a different address (re-INVITE). The peer may use another ptime than ours (30 ms packets are cut into 20
ms frames). RTCP arriving on the RTP port (rtcp-mux, RFC 5761) is understood too.

Sending. All sessions with the same ptime (and clock) share one pacer task per event loop that ticks on
a drift-free monotonic schedule; each tick sends at most one packet per session: a pending DTMF event
packet, else a frame of queued audio (a partial last frame is padded with silence), else — with
`send_silence=True` (default, keeps NAT bindings and RTP-timeout watchdogs happy) — encoded silence;
with `send_silence=False` nothing, and the next packet after such a gap carries the marker bit. The RTP
timestamp advances by one frame every tick whether or not a packet goes out; the sequence number by one
per packet. If the event loop stalls for more than 0.2 s, the missed ticks are skipped (timestamps jump,
marker set) rather than sent in a burst. Audio is paused, not dropped, while our direction does not
send, while there is no remote address, and while DTMF is being sent. Lateness of each packet against
its slot is measured (`late_sends` counts packets over half a ptime late).

DTMF. `send_dtmf` queues RFC 4733 events (updates every ptime, end packet three times, 60 ms pause
between digits) and returns after the last digit's end packets and pause. While nothing can be sent (no
remote address, or a direction that does not send, e.g. on hold) the digits wait. It raises
RtpSessionError when no telephone-event payload type was negotiated or the session closes first, and
DtmfError (a ValueError) naming a character that is not 0-9 * # A-D before sending anything.

RTCP. A compound SR (if we sent since the last report) or RR, plus SDES CNAME, goes to where the peer's
RTCP comes from (else its SDP a=rtcp / rtcp-mux address, else the RTP address + 1) every `rtcp_interval`
s randomised to 0.5-1.5x (RFC 3550 §6.2; `rtcp_interval=0` turns the periodic reports off), and an RR/SR
+ BYE on close. Received SR/RR are parsed; `stats().last_rtcp` is the latest one from the peer (loss and
jitter it measured on our stream, round-trip time).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.logging import get_logger
from parley.media.codecs import Codec, get_codec
from parley.sip.clock import MONOTONIC, Clock
from parley.sip.pacer import Pacer
from parley.sip.rtcp import RtcpReport
from parley.sip.rtcp_reporter import RtcpReporter
from parley.sip.rtp import is_rtcp
from parley.sip.rtp_receiver import RtpReceiver
from parley.sip.rtp_sender import Address, RtpSender

__all__ = ["DIRECTIONS", "RtpSession", "RtpSessionError", "RtpStats"]

log = get_logger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_SENDING = ("sendrecv", "sendonly")
_RECEIVING = ("sendrecv", "recvonly")


class RtpSessionError(RuntimeError):
    """Misuse of an RtpSession (not started, closed, no telephone-event negotiated...)."""


@dataclass(slots=True, frozen=True)
class RtpStats:
    """Counters of one RtpSession (a snapshot)."""

    local_port: int | None
    remote: tuple[str, int] | None  # where media goes now (latched source or SDP address)
    latched: bool  # True once the remote address comes from received packets
    ssrc: int
    remote_ssrc: int | None
    codec: str
    packets_sent: int
    bytes_sent: int  # RTP payload octets
    dtmf_packets_sent: int
    packets_received: int  # valid packets accepted (audio, DTMF, CN)
    bytes_received: int  # RTP payload octets
    lost: int  # RFC 3550 cumulative loss (expected - received)
    duplicates: int
    reordered: int
    late: int  # arrived after their playout time (dropped)
    concealed: int  # lost or undecodable packets concealed by the jitter buffer
    underruns: int
    overflow_dropped: int  # dropped to keep the jitter buffer delay bounded
    invalid: int  # garbage, unknown payload types, foreign sources
    jitter_ms: float  # interarrival jitter of the received stream (RFC 3550 A.8)
    late_sends: int  # packets sent more than half a ptime after their slot
    max_send_lateness_ms: float
    skipped_ticks: int  # send slots skipped after an event-loop stall
    dtmf_received: int
    rtcp_sent: int
    rtcp_received: int
    last_rtcp: RtcpReport | None  # latest report from the peer
    last_rtcp_sent: RtcpReport | None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._on_datagram(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer is not there (yet); keep going.
        log.debug("rtp.socket_error", error=str(exc))


class RtpSession:
    """An RTP/RTCP session for one call leg (see the module docstring for behaviour)."""

    def __init__(
        self,
        bind_host: str,
        port_range: tuple[int, int] = (20000, 30000),
        codec: Codec | None = None,
        telephone_event_pt: int | None = 101,
        ptime_ms: int = 20,
        port: int | None = None,
        *,
        send_silence: bool = True,
        jitter_target_ms: int = 60,
        jitter_max_ms: int = 300,
        jitter_min_ms: int | None = 20,
        rtcp_interval: float = 5.0,
        cname: str | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        lo, hi = port_range
        if not (1024 <= lo < hi <= 65535) and port is None:
            raise ValueError(f"port_range must be within 1024..65535 and non-empty, got {port_range}")
        if port is not None and not 1 <= port <= 65534:
            raise ValueError(f"port must be 1..65534, got {port}")
        if not isinstance(ptime_ms, int) or not 10 <= ptime_ms <= 120:
            raise ValueError(f"ptime_ms must be an integer 10..120, got {ptime_ms!r}")
        codec = codec or get_codec("PCMU")
        _check_te_pt(codec, telephone_event_pt)
        self.bind_host = bind_host
        self.port_range = port_range
        self.ptime_ms = ptime_ms
        self._requested_port = port
        self._clock = clock
        self._codec = codec
        self._te_pt = telephone_event_pt
        self.direction = "sendrecv"
        self.ssrc = random.getrandbits(32)
        self.cname = cname or f"parley-{os.getpid()}-{self.ssrc:08x}@{bind_host}"
        self.local_port: int | None = None
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._pacer: Pacer | None = None
        self._started = False
        self._closed = False

        self._receiver = RtpReceiver(
            codec,
            telephone_event_pt=telephone_event_pt,
            ptime_ms=ptime_ms,
            jitter_target_ms=jitter_target_ms,
            jitter_max_ms=jitter_max_ms,
            clock=clock,
            jitter_min_ms=jitter_min_ms,
        )
        self._sender = RtpSender(
            self.ssrc,
            codec,
            telephone_event_pt=telephone_event_pt,
            ptime_ms=ptime_ms,
            send_silence=send_silence,
            clock=clock,
            transmit=self._transmit_rtp,
            route=self._media_destination,
            first_sequence=random.getrandbits(16),
            first_timestamp=random.getrandbits(32),
        )
        self._rtcp = RtcpReporter(
            self.ssrc,
            self.cname,
            interval=rtcp_interval,
            sender=self._sender,
            receiver=self._receiver,
            clock=clock,
            transmit=self._transmit_rtcp,
        )

    def __repr__(self) -> str:
        return f"RtpSession(local_port={self.local_port}, remote={self.remote}, ssrc={self.ssrc:08x})"

    # -- configuration --------------------------------------------------------------------
    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def telephone_event_pt(self) -> int | None:
        return self._te_pt

    def set_codec(self, codec: Codec, telephone_event_pt: int | None = 101) -> None:
        """Switch codec (and the telephone-event PT, None if not negotiated). Setting the same ones again
        (a re-INVITE for hold/resume) changes nothing; otherwise the jitter buffer starts afresh and
        queued output is dropped if the audio rate changes."""
        _check_te_pt(codec, telephone_event_pt)
        current = self._codec
        if (current.name, current.payload_type, self._te_pt) == (
            codec.name,
            codec.payload_type,
            telephone_event_pt,
        ):
            return
        self._codec, self._te_pt = codec, telephone_event_pt
        self._receiver.set_codec(codec, telephone_event_pt)
        self._sender.set_codec(codec, telephone_event_pt)

    def set_remote(self, host: str, port: int) -> None:
        """The peer's media address from its SDP. A different address resets latching (a re-INVITE may
        move the media); the same address again keeps the latched source. "0.0.0.0" or port 0: none."""
        addr = _ip_address(host, port, "RTP", lowest_port=0)
        new = None if addr.is_unspecified or port == 0 else (str(addr), port)  # 0.0.0.0: old-style hold
        if self._receiver.latch.set_sdp(new):
            self._rtcp.forget_source()

    def set_remote_rtcp(self, host: str, port: int) -> None:
        """The peer's RTCP address when its SDP says so (a=rtcp:PORT, or its RTP port with a=rtcp-mux).
        RTCP received from the peer still takes precedence (symmetric RTCP)."""
        addr = _ip_address(host, port, "RTCP", lowest_port=1)
        self._rtcp.set_sdp_address((str(addr), port))

    def set_direction(self, direction: str) -> None:
        """Our media direction as negotiated: "sendrecv", "sendonly", "recvonly" or "inactive"."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
        self.direction = direction
        self._receiver.receiving = direction in _RECEIVING

    @property
    def send_silence(self) -> bool:
        return self._sender.send_silence

    @property
    def rtcp_interval(self) -> float:
        return self._rtcp.interval

    @property
    def frame_samples(self) -> int:
        """Samples in one ptime frame at codec.sample_rate (what read_frame returns)."""
        return self._sender.frame_samples

    @property
    def sample_rate(self) -> int:
        """Audio rate of read_frame / write (16000 for G.722, else 8000)."""
        return self._codec.sample_rate

    @property
    def remote(self) -> Address | None:
        """Where media is sent now."""
        return self._receiver.latch.remote

    @property
    def on_dtmf(self) -> Callable[[str], Any] | None:
        """Called once per received key press with the digit (an async handler runs as its own task)."""
        return self._receiver.on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, handler: Callable[[str], Any] | None) -> None:
        self._receiver.on_dtmf = handler

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the RTP port (even) and RTCP port (+1) and start sending/receiving."""
        if self._started:
            raise RtpSessionError("RtpSession already started")
        if self._closed:
            raise RtpSessionError("RtpSession is closed")
        self._rtp_transport, self._rtcp_transport, self.local_port = await self._bind()
        self._started = True
        self._pacer = Pacer.join(self._sender, self.ptime_ms, self._clock)
        self._rtcp.start()

    async def _bind(self) -> tuple[asyncio.DatagramTransport, asyncio.DatagramTransport, int]:
        loop = asyncio.get_running_loop()
        candidates: list[int]
        if self._requested_port is not None:
            candidates = [self._requested_port]
        else:
            candidates = port_candidates(self.port_range, 200)
        last_error: OSError | None = None
        for port in candidates:
            try:
                rtp, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self._on_rtp), local_addr=(self.bind_host, port)
                )
            except OSError as exc:
                last_error = exc
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self._on_rtcp), local_addr=(self.bind_host, port + 1)
                )
            except OSError as exc:
                rtp.close()
                last_error = exc
                continue
            return rtp, rtcp, port
        where = f"port {self._requested_port}" if self._requested_port is not None else f"{self.port_range}"
        raise OSError(f"cannot bind an RTP/RTCP port pair on {self.bind_host} {where}: {last_error}")

    async def close(self) -> None:
        """Send RTCP BYE, stop the sender, release the ports. `read_frame` then returns None."""
        if self._closed:
            return
        self._closed = True
        self._receiver.close()
        if self._pacer is not None:
            self._pacer.leave(self._sender)
        await self._rtcp.stop()
        if self._started:
            try:
                self._rtcp.send_report(bye=True)
            except OSError:
                pass
        self._sender.fail_pending_dtmf(RtpSessionError("RtpSession closed before the DTMF was sent"))
        for t in (self._rtp_transport, self._rtcp_transport):
            if t is not None:
                t.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- wiring ---------------------------------------------------------------------------
    def _media_destination(self) -> Address | None:
        """Where the sender's next packet goes; None while it must not send."""
        if self._closed or self.direction not in _SENDING:
            return None
        return self._receiver.latch.remote

    def _transmit_rtp(self, data: bytes, addr: Address) -> None:
        assert self._rtp_transport is not None  # the pacer only ticks a started session
        self._rtp_transport.sendto(data, addr)

    def _transmit_rtcp(self, data: bytes, addr: Address) -> None:
        if self._rtcp_transport is not None:
            self._rtcp_transport.sendto(data, addr)

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        if is_rtcp(data):  # RTCP multiplexed on the RTP port (RFC 5761)
            self._rtcp.receive(data, addr)
            return
        latch = self._receiver.latch
        before = latch.remote
        self._receiver.receive(data, addr)
        if latch.remote != before:  # latched onto a new source: RTCP follows it
            self._rtcp.forget_source()
            if before is not None and addr != latch.sdp:
                log.info("rtp.latched", local_port=self.local_port, sdp=latch.sdp, source=addr)

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        if not self._closed:
            self._rtcp.receive(data, addr)

    # -- media ----------------------------------------------------------------------------
    async def read_frame(self) -> np.ndarray | None:
        """The next ptime of received audio (int16, codec.sample_rate), paced; None once closed."""
        if self._closed:
            return None
        if self._pacer is None:
            raise RtpSessionError("RtpSession not started")
        return await self._receiver.read_frame(self._pacer)

    def write(self, pcm: np.ndarray) -> None:
        """Queue int16 mono PCM at codec.sample_rate for sending (returns at once)."""
        if self._closed:
            raise RtpSessionError("RtpSession is closed")
        self._sender.write(pcm)

    def clear_output(self) -> int:
        """Drop all queued output audio at once (barge-in); the number of samples dropped."""
        return self._sender.clear_output()

    @property
    def output_queued_ms(self) -> float:
        """Milliseconds of audio queued for sending."""
        return self._sender.output_queued_ms

    async def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Send digits as RFC 4733 events; returns once the last one (and its pause) is out."""
        if self._te_pt is None:
            raise RtpSessionError("telephone-event was not negotiated; cannot send RFC 4733 DTMF")
        if not self._started or self._closed:
            raise RtpSessionError("RtpSession is not running")
        await self._sender.send_dtmf(digits, duration_ms)

    # -- stats ----------------------------------------------------------------------------
    def stats(self) -> RtpStats:
        """A snapshot of the session's counters."""
        tx, rx, rtcp = self._sender, self._receiver, self._rtcp
        jb = rx.jitter_counters()
        reception = rx.reception
        return RtpStats(
            local_port=self.local_port,
            remote=rx.latch.remote,
            latched=rx.latch.latched,
            ssrc=self.ssrc,
            remote_ssrc=reception.ssrc,
            codec=self._codec.name,
            packets_sent=tx.packets_sent,
            bytes_sent=tx.bytes_sent,
            dtmf_packets_sent=tx.dtmf_packets_sent,
            packets_received=rx.packets_received,
            bytes_received=rx.bytes_received,
            lost=reception.lost,
            duplicates=reception.duplicates + jb["duplicates"],
            reordered=reception.reordered,
            late=jb["late"],
            concealed=jb["concealed"],
            underruns=jb["underruns"],
            overflow_dropped=jb["overflow_dropped"],
            invalid=rx.invalid + rtcp.invalid,
            jitter_ms=reception.jitter_ms,
            late_sends=tx.late_sends,
            max_send_lateness_ms=tx.max_lateness * 1000.0,
            skipped_ticks=tx.skipped_ticks,
            dtmf_received=rx.dtmf_received,
            rtcp_sent=rtcp.sent,
            rtcp_received=rtcp.received,
            last_rtcp=rtcp.last_received,
            last_rtcp_sent=rtcp.last_sent,
        )


def _ip_address(
    host: str, port: int, what: str, *, lowest_port: int
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"remote {what} host must be an IP address, got {host!r}") from None
    if not lowest_port <= port <= 65535:
        raise ValueError(f"remote {what} port out of range: {port}")
    return addr


def _check_te_pt(codec: Codec, telephone_event_pt: int | None) -> None:
    if telephone_event_pt is None:
        return
    if not 96 <= telephone_event_pt <= 127:
        raise ValueError(f"telephone-event payload type must be dynamic (96..127), got {telephone_event_pt}")
    if telephone_event_pt == codec.payload_type:
        raise ValueError("telephone-event and the codec cannot share a payload type")


def port_candidates(port_range: tuple[int, int], limit: int) -> list[int]:
    """Up to `limit` even ports of `port_range` (each with its odd RTCP neighbour below `hi`), starting at a
    random one and wrapping around: computed, not listed (a 20,000-port range is not built per call).
    ValueError when the range holds none."""
    lo, hi = port_range
    first = lo + (lo % 2)
    count = len(range(first, hi, 2))
    if count <= 0:
        raise ValueError(f"no even port with an odd neighbour in {port_range}")
    start = random.randrange(count)
    return [first + 2 * ((start + i) % count) for i in range(min(limit, count))]
