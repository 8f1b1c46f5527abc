"""One RTP media session: paced sender, jitter-buffered receiver, RTCP, RFC 4733 DTMF, symmetric RTP.

    s = RtpSession(bind_host, port_range=(20000, 30000), codec=get_codec("PCMU"), telephone_event_pt=101,
                   ptime_ms=20, port=None, *, send_silence=True, jitter_target_ms=60, jitter_max_ms=300,
                   rtcp_interval=5.0, cname=None)
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
raises. `read_frame` has one consumer; `write` may be called from anywhere on the loop.

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

Sending. All sessions with the same ptime share one pacer task per event loop that ticks on a drift-free
monotonic schedule; each tick sends at most one packet per session: a pending DTMF event packet, else a
frame of queued audio (a partial last frame is padded with silence), else — with `send_silence=True`
(default, keeps NAT bindings and RTP-timeout watchdogs happy) — encoded silence; with
`send_silence=False` nothing, and the next packet after such a gap carries the marker bit. The RTP
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
import inspect
import ipaddress
import os
import random
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from parley.logging import get_logger
from parley.media.codecs import Codec, get_codec
from parley.sip.dtmf import DtmfError, DtmfReceiver, digit_to_event, event_payloads
from parley.sip.jitter import JitterBuffer
from parley.sip.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    RtcpError,
    RtcpReport,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle,
    ntp_now,
    parse_rtcp,
)
from parley.sip.rtp import RtpError, RtpPacket, is_rtcp, parse_rtp, rtp_bytes

__all__ = ["DIRECTIONS", "RtpSession", "RtpSessionError", "RtpStats"]

log = get_logger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
PT_CN = 13
_G711_PTS = (0, 8)
_RELATCH_AFTER = 1.0
_RELATCH_PACKETS = 3
_MAX_STALL = 0.2
_RESYNC_TICKS = 25
_DTMF_PAUSE_MS = 60


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
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self._on_datagram(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer is not there (yet); keep going.
        log.debug("rtp.socket_error", error=str(exc))


class _Pacer:
    """One drift-free ticker per (event loop, ptime) that drives every session's sender."""

    _instances: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Pacer]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, ptime_ms: int) -> None:
        self.loop_pacers = cls_pacers = _Pacer._instances.setdefault(loop, {})
        self.ptime_ms = ptime_ms
        cls_pacers[ptime_ms] = self
        self.period = ptime_ms / 1000.0
        self.sessions: dict[int, RtpSession] = {}
        self.task: asyncio.Task[None] | None = None
        self.n = 0  # ticks so far (including skipped ones)
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def join(cls, session: RtpSession, ptime_ms: int) -> _Pacer:
        loop = asyncio.get_running_loop()
        pacer = cls._instances.get(loop, {}).get(ptime_ms)
        if pacer is None or pacer.task is None or pacer.task.done():
            pacer = cls(loop, ptime_ms)
            pacer.sessions[id(session)] = session
            pacer.task = loop.create_task(pacer._run(), name=f"rtp-pacer-{ptime_ms}ms")
        else:
            pacer.sessions[id(session)] = session
        return pacer

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def next_tick(self) -> asyncio.Future[None]:
        """A future done after the next tick (one per waiter, so cancelling one waiter hurts no other)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def leave(self, session: RtpSession) -> None:
        self.sessions.pop(id(session), None)

    async def _run(self) -> None:
        period = self.period
        t0 = time.monotonic()
        n = 0
        try:
            while self.sessions:
                n += 1
                deadline = t0 + n * period
                # always yield, even when behind: an overloaded pacer must not starve receivers
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                behind = time.monotonic() - deadline
                if behind > _MAX_STALL:
                    skipped = int(behind / period)
                    n += skipped
                    deadline += skipped * period
                    for s in list(self.sessions.values()):
                        s._skip_ticks(skipped)
                for s in list(self.sessions.values()):
                    try:
                        s._tick(deadline)
                    except Exception:  # one broken session must not stop the others' media
                        log.exception("rtp.tick_failed", port=s.local_port)
                self.n = n
                self._wake()  # readers (read_frame) run after this tick's packets are out
        finally:
            if self.loop_pacers.get(self.ptime_ms) is self:
                del self.loop_pacers[self.ptime_ms]
            self._wake()


class RtpSession:
    """An RTP/RTCP session for one call leg (see the module docstring for behaviour)."""

    _codec: Codec
    _te_pt: int | None
    _rx: ReceptionStats
    _jb: JitterBuffer
    _decoders: dict[int, Codec]

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
        rtcp_interval: float = 5.0,
        cname: str | None = None,
    ) -> None:
        lo, hi = port_range
        if not (1024 <= lo < hi <= 65535) and port is None:
            raise ValueError(f"port_range must be within 1024..65535 and non-empty, got {port_range}")
        if port is not None and not 1 <= port <= 65534:
            raise ValueError(f"port must be 1..65534, got {port}")
        if not isinstance(ptime_ms, int) or not 10 <= ptime_ms <= 120:
            raise ValueError(f"ptime_ms must be an integer 10..120, got {ptime_ms!r}")
        self.bind_host = bind_host
        self.port_range = port_range
        self.ptime_ms = ptime_ms
        self._requested_port = port
        self.send_silence = send_silence
        self.rtcp_interval = rtcp_interval
        self._jitter_target_ms = jitter_target_ms
        self._jitter_max_ms = jitter_max_ms
        self.on_dtmf: Callable[[str], Any] | None = None
        self._handler_tasks: set[asyncio.Future[Any]] = set()

        self.ssrc = random.getrandbits(32)
        self.cname = cname or f"parley-{os.getpid()}-{self.ssrc:08x}@{bind_host}"
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)

        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self.local_port: int | None = None
        self._closed = False
        self._started = False
        self._rtcp_task: asyncio.Task[None] | None = None

        self._sdp_remote: tuple[str, int] | None = None
        self._remote: tuple[str, int] | None = None
        self._latched = False
        self._candidate: tuple[tuple[str, int], int, int, int] | None = None  # addr, ssrc, seq, count
        self._last_rx_at = 0.0
        self._rtcp_source: tuple[str, int] | None = None  # where the peer's RTCP comes from (latched)
        self._rtcp_sdp: tuple[str, int] | None = None  # a=rtcp / a=rtcp-mux address from the SDP
        self.direction = "sendrecv"

        self._out: deque[np.ndarray] = deque()
        self._out_samples = 0
        self._talking = False
        self._dtmf_queue: deque[tuple[str, int, asyncio.Future[None]]] = deque()
        self._dtmf_packets: deque[tuple[bytes, bool]] = deque()
        self._dtmf_ts = 0
        self._dtmf_pause = 0
        self._dtmf_done: asyncio.Future[None] | None = None

        self._pacer: _Pacer | None = None
        self._read_tick: int | None = None

        self._n: dict[str, int] = dict.fromkeys(
            (
                "packets_sent",
                "bytes_sent",
                "dtmf_packets_sent",
                "packets_received",
                "bytes_received",
                "invalid",
                "late_sends",
                "skipped_ticks",
                "rtcp_sent",
                "rtcp_received",
            ),
            0,
        )
        self._sent_since_report = False
        self._last_sent_ts = 0
        self._last_sent_at = 0.0
        self._max_lateness = 0.0
        self._last_rtcp: RtcpReport | None = None
        self._last_rtcp_sent: RtcpReport | None = None
        self._dtmf_rx = DtmfReceiver()
        self._jb_totals = dict.fromkeys(_JB_COUNTERS, 0)
        codec = codec or get_codec("PCMU")
        _check_te_pt(codec, telephone_event_pt)
        self._rx = ReceptionStats(codec.clock_rate)
        self._jb = self._make_jitter_buffer(codec)
        self._apply_codec(codec, telephone_event_pt)

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
        self._apply_codec(codec, telephone_event_pt)
        if current.sample_rate != codec.sample_rate:
            self.clear_output()

    def _apply_codec(self, codec: Codec, telephone_event_pt: int | None) -> None:
        self._codec = codec
        self._encoder = codec.new()
        self._decoders = {codec.payload_type: codec.new()}
        if codec.sample_rate == 8000 and codec.payload_type in _G711_PTS:
            for name in ("PCMU", "PCMA"):
                other = get_codec(name)
                self._decoders.setdefault(other.payload_type, other)
        self._te_pt = telephone_event_pt
        self._frame_samples = codec.samples_per_frame(self.ptime_ms)
        self._ts_step = codec.timestamp_step(self.ptime_ms)
        if self._rx.clock_rate != codec.clock_rate:
            self._rx = ReceptionStats(codec.clock_rate)
        self._new_jitter_buffer()

    def _decode_item(self, item: Any) -> np.ndarray:
        pt, payload = item
        return self._decoders[pt].decode(payload)

    def set_remote(self, host: str, port: int) -> None:
        """The peer's media address from its SDP. A different address resets latching (a re-INVITE may
        move the media); the same address again keeps the latched source. "0.0.0.0" or port 0: none."""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"remote RTP host must be an IP address, got {host!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"remote RTP port out of range: {port}")
        new = None if addr.is_unspecified or port == 0 else (str(addr), port)  # 0.0.0.0: old-style hold
        if new == self._sdp_remote and new is not None:
            return  # same SDP address (re-INVITE): keep the latched source
        self._sdp_remote = new
        self._remote = self._sdp_remote
        self._latched = False
        self._rtcp_source = None

    def set_remote_rtcp(self, host: str, port: int) -> None:
        """The peer's RTCP address when its SDP says so (a=rtcp:PORT, or its RTP port with a=rtcp-mux).
        RTCP received from the peer still takes precedence (symmetric RTCP)."""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"remote RTCP host must be an IP address, got {host!r}") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"remote RTCP port out of range: {port}")
        self._rtcp_sdp = (str(addr), port)

    def set_direction(self, direction: str) -> None:
        """Our media direction as negotiated: "sendrecv", "sendonly", "recvonly" or "inactive"."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
        self.direction = direction

    @property
    def frame_samples(self) -> int:
        """Samples in one ptime frame at codec.sample_rate (what read_frame returns)."""
        return self._frame_samples

    @property
    def sample_rate(self) -> int:
        """Audio rate of read_frame / write (16000 for G.722, else 8000)."""
        return self._codec.sample_rate

    @property
    def remote(self) -> tuple[str, int] | None:
        """Where media is sent now."""
        return self._remote

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the RTP port (even) and RTCP port (+1) and start sending/receiving."""
        if self._started:
            raise RtpSessionError("RtpSession already started")
        if self._closed:
            raise RtpSessionError("RtpSession is closed")
        loop = asyncio.get_running_loop()
        candidates: list[int]
        if self._requested_port is not None:
            candidates = [self._requested_port]
        else:
            lo, hi = self.port_range
            first = lo + (lo % 2)
            evens = list(range(first, hi, 2))
            if not evens:
                raise ValueError(f"no even port with an odd neighbour in {self.port_range}")
            start = random.randrange(len(evens))
            candidates = evens[start:] + evens[:start]
        last_error: OSError | None = None
        for port in candidates[:200]:
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
            self._rtp_transport = rtp  # type: ignore[assignment]
            self._rtcp_transport = rtcp  # type: ignore[assignment]
            self.local_port = port
            break
        else:
            where = (
                f"port {self._requested_port}" if self._requested_port is not None else f"{self.port_range}"
            )
            raise OSError(f"cannot bind an RTP/RTCP port pair on {self.bind_host} {where}: {last_error}")
        self._started = True
        self._pacer = _Pacer.join(self, self.ptime_ms)
        if self.rtcp_interval > 0:
            self._rtcp_task = loop.create_task(self._rtcp_loop(), name=f"rtcp-{self.local_port}")

    async def close(self) -> None:
        """Send RTCP BYE, stop the sender, release the ports. `read_frame` then returns None."""
        if self._closed:
            return
        self._closed = True
        if self._pacer is not None:
            self._pacer.leave(self)
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            try:
                await self._rtcp_task
            except asyncio.CancelledError:
                pass
        if self._started:
            try:
                self._send_rtcp(bye=True)
            except OSError:
                pass
        err = RtpSessionError("RtpSession closed before the DTMF was sent")
        if self._dtmf_done is not None and not self._dtmf_done.done():
            self._dtmf_done.set_exception(err)
        while self._dtmf_queue:
            fut = self._dtmf_queue.popleft()[2]
            if not fut.done():
                fut.set_exception(err)
        for t in (self._rtp_transport, self._rtcp_transport):
            if t is not None:
                t.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- receive --------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closed:
            return
        if is_rtcp(data):  # RTCP multiplexed on the RTP port (RFC 5761)
            self._on_rtcp(data, addr)
            return
        now = time.monotonic()
        try:
            pkt = parse_rtp(data)
        except RtpError:
            self._n["invalid"] += 1
            return
        pt = pkt.payload_type
        is_audio = pt in self._decoders
        if not (is_audio or pt == self._te_pt or pt == PT_CN) or (is_audio and not pkt.payload):
            self._n["invalid"] += 1
            return
        if (addr != self._remote or not self._latched) and not self._latch(addr, pkt, now):
            self._n["invalid"] += 1
            return
        self._last_rx_at = now
        rx = self._rx
        if rx.ssrc != pkt.ssrc:
            rx.reset(pkt.ssrc, pkt.sequence)
            self._new_jitter_buffer()
        kind = rx.update(pkt.sequence, pkt.timestamp if is_audio else None, now)
        if kind == "duplicate":
            return
        if kind == "jump":
            self._n["invalid"] += 1
            return
        if kind == "restart":
            self._new_jitter_buffer()
        self._n["packets_received"] += 1
        self._n["bytes_received"] += len(pkt.payload)
        ext = rx.extend(pkt.sequence)
        receiving = self.direction in ("sendrecv", "recvonly")
        if is_audio and receiving:
            self._jb.push(ext, (pt, pkt.payload), now)
            return
        self._jb.push_gap(ext, now)
        if pt == self._te_pt and receiving:
            self._on_dtmf_packet(pkt)

    def _latch(self, addr: tuple[str, int], pkt: RtpPacket, now: float) -> bool:
        """Whether a packet from `addr` (not the latched source) is accepted, latching onto it if so."""
        if self._latched:
            if now - self._last_rx_at < _RELATCH_AFTER:
                return False  # someone else while the latched peer is still talking
            # the latched source went quiet: a new one must prove itself with a few packets in sequence
            cand = self._candidate
            if (
                cand is not None
                and cand[0] == addr
                and cand[1] == pkt.ssrc
                and cand[2] == (pkt.sequence - 1) & 0xFFFF
            ):
                self._candidate = (addr, pkt.ssrc, pkt.sequence, cand[3] + 1)
            else:
                self._candidate = (addr, pkt.ssrc, pkt.sequence, 1)
            if self._candidate[3] < _RELATCH_PACKETS:
                return False
        self._candidate = None
        if addr != self._sdp_remote and (self._sdp_remote is not None or self._latched):
            log.info("rtp.latched", local_port=self.local_port, sdp=self._sdp_remote, source=addr)
        if addr != self._remote:
            self._rtcp_source = None
        self._remote = addr
        self._latched = True
        return True

    def _on_dtmf_packet(self, pkt: RtpPacket) -> None:
        try:
            digit = self._dtmf_rx.feed(pkt.ssrc, pkt.timestamp, pkt.payload)
        except DtmfError:
            self._n["invalid"] += 1
            return
        if digit is not None and self.on_dtmf is not None:
            try:
                result = self.on_dtmf(digit)
                if inspect.isawaitable(result):  # an async handler runs as its own task
                    task = asyncio.ensure_future(result)
                    self._handler_tasks.add(task)
                    task.add_done_callback(self._handler_done)
            except Exception:
                log.exception("rtp.on_dtmf_failed", digit=digit)

    def _handler_done(self, task: asyncio.Future[Any]) -> None:
        self._handler_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rtp.on_dtmf_failed", error=repr(task.exception()))

    def _new_jitter_buffer(self) -> None:
        for name in _JB_COUNTERS:
            self._jb_totals[name] += getattr(self._jb, name)
        self._jb = self._make_jitter_buffer(self._codec)

    def _make_jitter_buffer(self, codec: Codec) -> JitterBuffer:
        return JitterBuffer(
            decode=self._decode_item,
            frame_samples=codec.samples_per_frame(self.ptime_ms),
            sample_rate=codec.sample_rate,
            target_ms=self._jitter_target_ms,
            max_ms=self._jitter_max_ms,
        )

    async def read_frame(self) -> np.ndarray | None:
        """The next ptime of received audio (int16, codec.sample_rate), paced; None once closed."""
        if self._closed:
            return None
        pacer = self._pacer
        if pacer is None:
            raise RtpSessionError("RtpSession not started")
        if self._read_tick is None:
            self._read_tick = pacer.n
        self._read_tick += 1
        if pacer.n - self._read_tick > _RESYNC_TICKS:
            self._read_tick = pacer.n  # the consumer fell far behind: no burst of stale frames
        while pacer.n < self._read_tick and pacer.running:
            await pacer.next_tick()
            if self._closed:
                return None
        return self._jb.frame(time.monotonic())

    # -- send -----------------------------------------------------------------------------
    def write(self, pcm: np.ndarray) -> None:
        """Queue int16 mono PCM at codec.sample_rate for sending (returns at once)."""
        arr = np.asarray(pcm)
        if arr.dtype != np.int16:
            raise ValueError(f"write() takes int16 PCM, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"write() takes mono PCM (1-D), got shape {arr.shape}")
        if self._closed:
            raise RtpSessionError("RtpSession is closed")
        if len(arr):
            self._out.append(arr.copy())
            self._out_samples += len(arr)

    def clear_output(self) -> int:
        """Drop all queued output audio at once (barge-in); the number of samples dropped."""
        dropped = self._out_samples
        self._out.clear()
        self._out_samples = 0
        return dropped

    @property
    def output_queued_ms(self) -> float:
        """Milliseconds of audio queued for sending."""
        return self._out_samples * 1000.0 / self._codec.sample_rate

    async def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Send digits as RFC 4733 events; returns once the last one (and its pause) is out."""
        if self._te_pt is None:
            raise RtpSessionError("telephone-event was not negotiated; cannot send RFC 4733 DTMF")
        if not self._started or self._closed:
            raise RtpSessionError("RtpSession is not running")
        if not 40 <= duration_ms <= 5000:
            raise ValueError(f"DTMF duration must be 40..5000 ms, got {duration_ms}")
        for d in digits:
            digit_to_event(d)  # validates; DtmfError (a ValueError) names the bad character
        if not digits:
            return
        futures = []
        loop = asyncio.get_running_loop()
        for d in digits:
            fut: asyncio.Future[None] = loop.create_future()
            self._dtmf_queue.append((d, duration_ms, fut))
            futures.append(fut)
        await asyncio.gather(*futures)

    def _can_send(self) -> bool:
        return self._remote is not None and self.direction in ("sendrecv", "sendonly") and not self._closed

    def _skip_ticks(self, n: int) -> None:
        self._ts = (self._ts + n * self._ts_step) & 0xFFFFFFFF
        self._n["skipped_ticks"] += n
        self._talking = False

    def _tick(self, deadline: float) -> None:
        ts = self._ts
        self._ts = (ts + self._ts_step) & 0xFFFFFFFF
        if not self._can_send():
            self._talking = False
            return
        if self._dtmf_tick(ts, deadline):
            return
        frame = self._take_frame()
        if frame is None:
            if not self.send_silence:
                self._talking = False
                return
            frame = np.zeros(self._frame_samples, dtype=np.int16)
        payload = self._encoder.encode(frame)
        self._send(self._codec.payload_type, ts, payload, marker=not self._talking, deadline=deadline)
        self._talking = True

    def _dtmf_tick(self, ts: int, deadline: float) -> bool:
        """Send the next DTMF packet if an event is under way; True when this tick was used."""
        if not self._dtmf_packets:
            if self._dtmf_done is not None:
                if self._dtmf_pause > 0:
                    self._dtmf_pause -= 1
                    return False
                if not self._dtmf_done.done():
                    self._dtmf_done.set_result(None)
                self._dtmf_done = None
            if not self._dtmf_queue or self._te_pt is None:
                return False
            digit, duration_ms, fut = self._dtmf_queue.popleft()
            if fut.done():
                return False
            duration = duration_ms * self._codec.clock_rate // 1000
            self._dtmf_packets.extend(event_payloads(digit, duration, self._ts_step))
            self._dtmf_ts = ts
            self._dtmf_done = fut
            self._dtmf_pause = max(1, _DTMF_PAUSE_MS // self.ptime_ms)
        payload, marker = self._dtmf_packets.popleft()
        assert self._te_pt is not None
        self._send(self._te_pt, self._dtmf_ts, payload, marker=marker, deadline=deadline, dtmf=True)
        return True

    def _take_frame(self) -> np.ndarray | None:
        if not self._out_samples:
            return None
        need = self._frame_samples
        parts: list[np.ndarray] = []
        while need and self._out:
            head = self._out[0]
            if len(head) <= need:
                parts.append(self._out.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._out[0] = head[need:]
                need = 0
        taken = self._frame_samples - need
        self._out_samples -= taken
        if need:
            parts.append(np.zeros(need, dtype=np.int16))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _send(
        self, pt: int, ts: int, payload: bytes, *, marker: bool, deadline: float, dtmf: bool = False
    ) -> None:
        assert self._rtp_transport is not None and self._remote is not None
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        self._rtp_transport.sendto(rtp_bytes(pt, seq, ts, self.ssrc, payload, marker), self._remote)
        now = time.monotonic()
        lateness = now - deadline
        self._max_lateness = max(self._max_lateness, lateness)
        if lateness * 2000 > self.ptime_ms:
            self._n["late_sends"] += 1
        self._n["packets_sent"] += 1
        self._n["bytes_sent"] += len(payload)
        if dtmf:
            self._n["dtmf_packets_sent"] += 1
        self._sent_since_report = True
        self._last_sent_ts = ts
        self._last_sent_at = now

    # -- RTCP -----------------------------------------------------------------------------
    async def _rtcp_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.rtcp_interval * random.uniform(0.5, 1.5))
            try:
                self._send_rtcp()
            except OSError as exc:
                log.debug("rtcp.send_failed", error=str(exc))

    def _send_rtcp(self, bye: bool = False) -> None:
        dest = self._rtcp_destination()
        if self._rtcp_transport is None or dest is None:
            return
        now = time.monotonic()
        blocks = [self._rx.report_block(now)] if self._rx.ssrc is not None else []
        report: SenderReport | ReceiverReport
        if self._sent_since_report:
            wall = time.time()
            # RTP timestamp that corresponds to `wall` on our sending clock
            rtp_ts = (
                self._last_sent_ts + int((now - self._last_sent_at) * self._codec.clock_rate)
            ) & 0xFFFFFFFF
            report = SenderReport(
                self.ssrc, ntp_now(wall), rtp_ts, self._n["packets_sent"], self._n["bytes_sent"], blocks
            )
            kind = "SR"
        else:
            report = ReceiverReport(self.ssrc, blocks)
            kind = "RR"
        self._sent_since_report = False
        packets: list[Any] = [report, SourceDescription([(self.ssrc, self.cname)])]
        if bye:
            packets.append(Bye([self.ssrc]))
        self._rtcp_transport.sendto(build_compound(packets), dest)
        self._n["rtcp_sent"] += 1
        block = blocks[0] if blocks else None
        self._last_rtcp_sent = RtcpReport(
            kind=kind,
            ssrc=self.ssrc,
            at=now,
            sender_packets=self._n["packets_sent"] if kind == "SR" else None,
            sender_octets=self._n["bytes_sent"] if kind == "SR" else None,
            fraction_lost=block.fraction_lost / 256 if block else None,
            cumulative_lost=block.cumulative_lost if block else None,
            jitter_ms=block.jitter * 1000.0 / self._codec.clock_rate if block else None,
        )

    def _rtcp_destination(self) -> tuple[str, int] | None:
        """Where the peer's RTCP comes from; else its SDP a=rtcp (with rtcp-mux: wherever RTP goes,
        latched); else the RTP address with port + 1."""
        if self._rtcp_source is not None:
            return self._rtcp_source
        sdp = self._rtcp_sdp
        if sdp is not None and sdp == self._sdp_remote:
            return self._remote
        if sdp is not None:
            return sdp
        return (self._remote[0], self._remote[1] + 1) if self._remote is not None else None

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closed:
            return
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            self._n["invalid"] += 1
            return
        now = time.monotonic()
        if self._rtcp_source is None and (self._remote is None or addr[0] == self._remote[0]):
            self._rtcp_source = addr
        self._n["rtcp_received"] += 1
        for p in packets:
            if isinstance(p, (SenderReport, ReceiverReport)):
                if isinstance(p, SenderReport) and (self._rx.ssrc is None or p.ssrc == self._rx.ssrc):
                    self._rx.last_sr_ntp_middle = ntp_middle(p.ntp_timestamp)
                    self._rx.last_sr_at = now
                self._last_rtcp = self._report_from(p, now)

    def _report_from(self, p: SenderReport | ReceiverReport, now: float) -> RtcpReport:
        about_us = next((b for b in p.reports if b.ssrc == self.ssrc), None)
        rtt_ms = None
        if about_us is not None and about_us.lsr:
            rtt = (ntp_middle(ntp_now()) - about_us.lsr - about_us.dlsr) & 0xFFFFFFFF
            if rtt < 0x80000000:
                rtt_ms = rtt * 1000.0 / 65536
        is_sr = isinstance(p, SenderReport)
        return RtcpReport(
            kind="SR" if is_sr else "RR",
            ssrc=p.ssrc,
            at=now,
            sender_packets=p.packet_count if isinstance(p, SenderReport) else None,
            sender_octets=p.octet_count if isinstance(p, SenderReport) else None,
            fraction_lost=about_us.fraction_lost / 256 if about_us else None,
            cumulative_lost=about_us.cumulative_lost if about_us else None,
            jitter_ms=about_us.jitter * 1000.0 / self._codec.clock_rate if about_us else None,
            rtt_ms=rtt_ms,
        )

    # -- stats ----------------------------------------------------------------------------
    def stats(self) -> RtpStats:
        """A snapshot of the session's counters."""
        jb = {name: self._jb_totals[name] + getattr(self._jb, name) for name in _JB_COUNTERS}
        n = self._n
        return RtpStats(
            local_port=self.local_port,
            remote=self._remote,
            latched=self._latched,
            ssrc=self.ssrc,
            remote_ssrc=self._rx.ssrc,
            codec=self._codec.name,
            packets_sent=n["packets_sent"],
            bytes_sent=n["bytes_sent"],
            dtmf_packets_sent=n["dtmf_packets_sent"],
            packets_received=n["packets_received"],
            bytes_received=n["bytes_received"],
            lost=self._rx.lost,
            duplicates=self._rx.duplicates + jb["duplicates"],
            reordered=self._rx.reordered,
            late=jb["late"],
            concealed=jb["concealed"],
            underruns=jb["underruns"],
            overflow_dropped=jb["overflow_dropped"],
            invalid=n["invalid"],
            jitter_ms=self._rx.jitter_ms,
            late_sends=n["late_sends"],
            max_send_lateness_ms=self._max_lateness * 1000.0,
            skipped_ticks=n["skipped_ticks"],
            dtmf_received=self._dtmf_rx.digits_received,
            rtcp_sent=n["rtcp_sent"],
            rtcp_received=n["rtcp_received"],
            last_rtcp=self._last_rtcp,
            last_rtcp_sent=self._last_rtcp_sent,
        )


_JB_COUNTERS = ("concealed", "underruns", "late", "duplicates", "overflow_dropped")


def _check_te_pt(codec: Codec, telephone_event_pt: int | None) -> None:
    if telephone_event_pt is None:
        return
    if not 96 <= telephone_event_pt <= 127:
        raise ValueError(f"telephone-event payload type must be dynamic (96..127), got {telephone_event_pt}")
    if telephone_event_pt == codec.payload_type:
        raise ValueError("telephone-event and the codec cannot share a payload type")
