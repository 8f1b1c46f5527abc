"""The receiving half of an RTP session: validate, latch, reorder, decode, detect RFC 4733 DTMF.

    rx = RtpReceiver(codec, telephone_event_pt=101, ptime_ms=20, jitter_target_ms=60, jitter_max_ms=300,
                     clock=MONOTONIC)
    rx.receive(datagram, source_address)    # one RTP datagram; never raises
    pcm = await rx.read_frame(pacer)        # one ptime of int16 PCM, paced by the pacer; None once closed
    rx.on_dtmf = lambda digit: ...          # once per key press (an async handler runs as a task)
    rx.latch.remote                         # where the peer's media comes from (see symmetric_rtp)
    rx.receiving = False                    # our direction does not receive: audio and DTMF are dropped

A packet is accepted when it is valid RTP (version 2, padding/CSRC/extension lengths), its payload type
is our codec, either G.711 law when our codec is 8 kHz G.711, telephone-event or comfort noise, audio
is non-empty, and the latch takes its source; anything else counts in `invalid`. Accepted packets feed
the RFC 3550 reception statistics (`reception`, what RTCP reports), audio goes to the jitter buffer,
other payloads take their sequence number in it (they are not loss), telephone-event payloads go to
the DTMF detector. A new SSRC or a sequence restart starts a fresh jitter buffer.

`read_frame`: the n-th call returns n pacer ticks after the first with exactly one frame (decoded audio,
concealment or silence); a consumer more than `RESYNC_TICKS` behind is resynchronised, not handed a
burst.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from parley.logging import get_logger
from parley.media.codecs import Codec, get_codec
from parley.sip.clock import Clock
from parley.sip.dtmf import DtmfError, DtmfReceiver
from parley.sip.jitter import JitterBuffer
from parley.sip.pacer import Pacer
from parley.sip.rtcp import ReceptionStats
from parley.sip.rtp import RtpError, RtpPacket, parse_rtp
from parley.sip.symmetric_rtp import SourceLatch
from parley.support.taskset import TaskSet

__all__ = ["PT_CN", "RESYNC_TICKS", "RtpReceiver"]

log = get_logger(__name__)

PT_CN = 13  # comfort noise (RFC 3389)
G711_PTS = (0, 8)
RESYNC_TICKS = 25
JITTER_COUNTERS = ("concealed", "underruns", "late", "duplicates", "overflow_dropped", "skipped")


class RtpReceiver:
    """RTP input of one session (see the module docstring)."""

    def __init__(
        self,
        codec: Codec,
        *,
        telephone_event_pt: int | None,
        ptime_ms: int,
        jitter_target_ms: int,
        jitter_max_ms: int,
        clock: Clock,
        jitter_min_ms: int | None = None,
    ) -> None:
        self.ptime_ms = ptime_ms
        self._jitter_target_ms = jitter_target_ms
        self._jitter_max_ms = jitter_max_ms
        self._jitter_min_ms = jitter_min_ms
        self._clock = clock
        self.latch = SourceLatch()
        self.receiving = True
        self.closed = False
        self.on_dtmf: Callable[[str], Any] | None = None
        self._handlers = TaskSet("rtp on_dtmf")
        self._dtmf = DtmfReceiver()
        self._read_tick: int | None = None
        # counters
        self.packets_received = 0  # valid packets accepted (audio, DTMF, CN)
        self.bytes_received = 0  # RTP payload octets
        self.invalid = 0
        self._jb_totals = dict.fromkeys(JITTER_COUNTERS, 0)  # of jitter buffers replaced so far
        self.reception = ReceptionStats(codec.clock_rate)
        self._jb = self._jitter_buffer(codec)
        self._use(codec, telephone_event_pt)

    # -- configuration --------------------------------------------------------------------
    def set_codec(self, codec: Codec, telephone_event_pt: int | None) -> None:
        """Decode `codec` from now on (the jitter buffer starts afresh)."""
        self._use(codec, telephone_event_pt)

    def _use(self, codec: Codec, telephone_event_pt: int | None) -> None:
        self.codec = codec
        self._decoders = {codec.payload_type: codec.new()}
        if codec.sample_rate == 8000 and codec.payload_type in G711_PTS:
            for name in ("PCMU", "PCMA"):
                other = get_codec(name)
                self._decoders.setdefault(other.payload_type, other)
        self._te_pt = telephone_event_pt
        if self.reception.clock_rate != codec.clock_rate:
            self.reception = ReceptionStats(codec.clock_rate)
        self._restart_jitter_buffer()

    def _jitter_buffer(self, codec: Codec) -> JitterBuffer:
        return JitterBuffer(
            decode=self._decode,
            frame_samples=codec.samples_per_frame(self.ptime_ms),
            sample_rate=codec.sample_rate,
            target_ms=self._jitter_target_ms,
            max_ms=self._jitter_max_ms,
            min_ms=self._jitter_min_ms,
        )

    def _restart_jitter_buffer(self) -> None:
        for name in JITTER_COUNTERS:
            self._jb_totals[name] += getattr(self._jb, name)
        self._jb = self._jitter_buffer(self.codec)

    def _decode(self, item: tuple[int, bytes]) -> np.ndarray:
        pt, payload = item
        return self._decoders[pt].decode(payload)

    # -- input ----------------------------------------------------------------------------
    def receive(self, data: bytes, addr: tuple[str, int]) -> None:
        """One RTP datagram from `addr` (RTCP is routed elsewhere); garbage is counted, never raised."""
        now = self._clock.now()
        try:
            pkt = parse_rtp(data)
        except RtpError:
            self.invalid += 1
            return
        pt = pkt.payload_type
        is_audio = pt in self._decoders
        if not (is_audio or pt == self._te_pt or pt == PT_CN) or (is_audio and not pkt.payload):
            self.invalid += 1
            return
        if not self.latch.accept(addr, pkt.ssrc, pkt.sequence, now):
            self.invalid += 1
            return
        rx = self.reception
        if rx.ssrc != pkt.ssrc:
            rx.reset(pkt.ssrc, pkt.sequence)
            self._restart_jitter_buffer()
        kind = rx.update(pkt.sequence, pkt.timestamp if is_audio else None, now)
        if kind == "duplicate":
            return
        if kind == "jump":
            self.invalid += 1
            return
        if kind == "restart":
            self._restart_jitter_buffer()
        self.packets_received += 1
        self.bytes_received += len(pkt.payload)
        ext = rx.extend(pkt.sequence)
        if is_audio and self.receiving:
            self._jb.push(ext, (pt, pkt.payload), now)
            return
        self._jb.push_gap(ext, now)
        if pt == self._te_pt and self.receiving:
            self._on_dtmf_packet(pkt)

    def _on_dtmf_packet(self, pkt: RtpPacket) -> None:
        try:
            digit = self._dtmf.feed(pkt.ssrc, pkt.timestamp, pkt.payload)
        except DtmfError:
            self.invalid += 1
            return
        if digit is None or self.on_dtmf is None:
            return
        try:
            result = self.on_dtmf(digit)
        except Exception:
            log.exception("rtp.on_dtmf_failed", digit=digit)
            return
        if inspect.isawaitable(result):  # an async handler runs as its own task
            self._handlers.spawn(_awaited(result), name=f"on_dtmf-{digit}")

    @property
    def dtmf_received(self) -> int:
        return self._dtmf.digits_received

    def jitter_counters(self) -> dict[str, int]:
        """Jitter buffer counters over the session (all buffers so far): concealed, underruns, late..."""
        return {name: self._jb_totals[name] + getattr(self._jb, name) for name in JITTER_COUNTERS}

    # -- output ---------------------------------------------------------------------------
    async def read_frame(self, pacer: Pacer) -> np.ndarray | None:
        """The next ptime of received audio (int16, codec.sample_rate), one per pacer tick; None once closed."""
        if self.closed:
            return None
        if self._read_tick is None:
            self._read_tick = pacer.n
        self._read_tick += 1
        if pacer.n - self._read_tick > RESYNC_TICKS:
            self._read_tick = pacer.n  # the consumer fell far behind: no burst of stale frames
        while pacer.n < self._read_tick and pacer.running:
            await pacer.next_tick()
            if self.closed:
                return None
        return self._jb.frame(self._clock.now())

    def close(self) -> None:
        """`read_frame` returns None from now on (a reader waiting for a tick wakes with None)."""
        self.closed = True


async def _awaited(aw: Awaitable[Any]) -> None:
    await aw
