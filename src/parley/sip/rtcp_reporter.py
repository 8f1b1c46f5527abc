"""RTCP of one RTP session: periodic SR/RR + SDES CNAME out, the peer's reports in (RFC 3550 §6).

    rtcp = RtcpReporter(ssrc, cname, interval=5.0, sender=tx, receiver=rx, clock=MONOTONIC,
                        transmit=transport.sendto)
    rtcp.start()                       # the periodic reports (interval 0: none)
    rtcp.receive(datagram, addr)       # an RTCP datagram (on the RTCP port, or rtcp-mux on the RTP port)
    rtcp.set_sdp_address(addr)         # SDP a=rtcp:PORT, or the RTP address with a=rtcp-mux
    rtcp.forget_source()               # the RTP remote moved: learn where RTCP comes from again
    await rtcp.stop(); rtcp.send_report(bye=True)

A report is an SR when we sent RTP since the previous report (its RTP timestamp extrapolated from
the last packet sent to now), else an RR, with one report block about the peer's stream once we have
received from it, plus SDES CNAME (and BYE on close). It goes to where the peer's RTCP comes from
(first RTCP from the RTP peer's host, symmetric RTCP), else the SDP's a=rtcp address (with rtcp-mux:
wherever RTP goes, latched), else the RTP address + 1; nowhere while there is no remote. Reports go
every `interval` s randomised to 0.5-1.5x (§6.2), on `clock`. A received SR/RR becomes `last_received`
(loss and jitter the peer measured on our stream, round-trip time from its LSR/DLSR); a received SR
also gives our next report block its LSR/DLSR. Garbage counts in `invalid`, never raises.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from parley.logging import get_logger
from parley.sip.clock import Clock
from parley.sip.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    RtcpReport,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle,
    ntp_now,
    parse_rtcp,
)
from parley.sip.rtp_receiver import RtpReceiver
from parley.sip.rtp_sender import Address, RtpSender
from parley.support.taskset import TaskSet

__all__ = ["RtcpReporter"]

log = get_logger(__name__)


class RtcpReporter:
    """Sends our reports about `sender`'s and `receiver`'s streams; keeps the peer's (module docstring)."""

    def __init__(
        self,
        ssrc: int,
        cname: str,
        *,
        interval: float,
        sender: RtpSender,
        receiver: RtpReceiver,
        clock: Clock,
        transmit: Callable[[bytes, Address], object],
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.interval = interval
        self._sender = sender
        self._receiver = receiver
        self._clock = clock
        self._transmit = transmit
        self._wallclock = wallclock
        self._tasks = TaskSet("rtcp")
        self._source: Address | None = None  # where the peer's RTCP comes from
        self._sdp: Address | None = None  # a=rtcp / a=rtcp-mux address from the SDP
        self._packets_at_last_report = 0
        # counters
        self.sent = 0
        self.received = 0
        self.invalid = 0
        self.last_received: RtcpReport | None = None
        self.last_sent: RtcpReport | None = None

    # -- where to --------------------------------------------------------------------------
    def set_sdp_address(self, addr: Address) -> None:
        self._sdp = addr

    def forget_source(self) -> None:
        self._source = None

    def destination(self) -> Address | None:
        """Where the next report goes (see the module docstring), None while there is no remote."""
        if self._source is not None:
            return self._source
        latch = self._receiver.latch
        if self._sdp is not None:
            return latch.remote if self._sdp == latch.sdp else self._sdp
        return (latch.remote[0], latch.remote[1] + 1) if latch.remote is not None else None

    # -- sending ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.interval > 0:
            self._tasks.spawn(self._run(), name="rtcp-reports")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def _run(self) -> None:
        while True:
            await self._clock.sleep(self.interval * random.uniform(0.5, 1.5))
            try:
                self.send_report()
            except OSError as exc:
                log.debug("rtcp.send_failed", error=str(exc))

    def send_report(self, bye: bool = False) -> None:
        """Send one compound SR/RR + SDES (+ BYE) now, if there is somewhere to send it."""
        dest = self.destination()
        if dest is None:
            return
        now = self._clock.now()
        rx, tx = self._receiver.reception, self._sender
        blocks = [rx.report_block(now)] if rx.ssrc is not None else []
        report: SenderReport | ReceiverReport
        if tx.packets_sent != self._packets_at_last_report:
            ntp = ntp_now(self._wallclock())
            report = SenderReport(self.ssrc, ntp, tx.rtp_timestamp_at(now), tx.packets_sent, tx.bytes_sent, blocks)
        else:
            report = ReceiverReport(self.ssrc, blocks)
        self._packets_at_last_report = tx.packets_sent
        packets: list[RtcpPacket] = [report, SourceDescription([(self.ssrc, self.cname)])]
        if bye:
            packets.append(Bye([self.ssrc]))
        self._transmit(build_compound(packets), dest)
        self.sent += 1
        self.last_sent = self._summary(report, now, about=blocks[0] if blocks else None)

    # -- receiving -------------------------------------------------------------------------
    def receive(self, data: bytes, addr: Address) -> None:
        """One RTCP datagram from `addr`."""
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            self.invalid += 1
            return
        now = self._clock.now()
        remote = self._receiver.latch.remote
        if self._source is None and (remote is None or addr[0] == remote[0]):
            self._source = addr
        self.received += 1
        rx = self._receiver.reception
        for p in packets:
            if isinstance(p, (SenderReport, ReceiverReport)):
                if isinstance(p, SenderReport) and (rx.ssrc is None or p.ssrc == rx.ssrc):
                    rx.last_sr_ntp_middle = ntp_middle(p.ntp_timestamp)
                    rx.last_sr_at = now
                about_us = next((b for b in p.reports if b.ssrc == self.ssrc), None)
                self.last_received = self._summary(p, now, about=about_us, rtt_from=about_us)

    def _summary(
        self,
        p: SenderReport | ReceiverReport,
        now: float,
        *,
        about: ReportBlock | None,
        rtt_from: ReportBlock | None = None,
    ) -> RtcpReport:
        """The RtcpReport record of report `p` with its block `about` the other side's stream."""
        rtt_ms = None
        if rtt_from is not None and rtt_from.lsr:
            rtt = (ntp_middle(ntp_now(self._wallclock())) - rtt_from.lsr - rtt_from.dlsr) & 0xFFFFFFFF
            if rtt < 0x80000000:
                rtt_ms = rtt * 1000.0 / 65536
        is_sr = isinstance(p, SenderReport)
        return RtcpReport(
            kind="SR" if is_sr else "RR",
            ssrc=p.ssrc,
            at=now,
            sender_packets=p.packet_count if isinstance(p, SenderReport) else None,
            sender_octets=p.octet_count if isinstance(p, SenderReport) else None,
            fraction_lost=about.fraction_lost / 256 if about else None,
            cumulative_lost=about.cumulative_lost if about else None,
            jitter_ms=about.jitter * 1000.0 / self._receiver.codec.clock_rate if about else None,
            rtt_ms=rtt_ms,
        )
