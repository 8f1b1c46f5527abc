"""The parts of an RTP session on their own, on a clock the test moves: the pacer's schedule, the
symmetric-RTP latch, the sender's packets and the RTCP reporter's timing and addressing.

No sockets and no waiting on the wall clock: packets are captured where they would be sent, time moves
with `FakeClock.advance` (a punctual event loop) or `FakeClock.stall` (a blocked one). Each test states
one rule of the contract in its name; tests/sip/test_rtp_session.py checks the whole over real UDP.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import numpy as np
import pytest

from parley.media.codecs import get_codec
from parley.sip.dtmf import parse_event
from parley.sip.pacer import MAX_STALL, Pacer
from parley.sip.rtcp import ReceiverReport, SenderReport, parse_rtcp
from parley.sip.rtcp_reporter import RtcpReporter
from parley.sip.rtp import RtpPacket, parse_rtp
from parley.sip.rtp_receiver import RESYNC_TICKS, RtpReceiver
from parley.sip.rtp_sender import RtpSender
from parley.sip.symmetric_rtp import RELATCH_AFTER, SourceLatch
from tests.sip.fake_clock import FakeClock

PCMU = get_codec("PCMU")
PERIOD = 0.02
PEER = ("198.51.100.7", 40000)
NAT = ("203.0.113.9", 61000)
OTHER = ("192.0.2.44", 5004)

pytestmark = pytest.mark.timeout(30)


# -- helpers ------------------------------------------------------------------------------------
@dataclass
class Metronome:
    """A pacer member that writes down when it ticked (deadline, clock time) and what it skipped."""

    clock: FakeClock
    ticks: list[tuple[float, float]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def tick(self, deadline: float) -> None:
        self.ticks.append((deadline, self.clock.now()))

    def skip_ticks(self, n: int) -> None:
        self.skipped.append(n)


@dataclass
class Wire:
    """Where a part's datagrams would go: (clock time, data, address) in order."""

    clock: FakeClock
    sent: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)

    def __call__(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((self.clock.now(), data, addr))

    def rtp(self) -> list[RtpPacket]:
        return [parse_rtp(d) for _, d, _ in self.sent]


def level(value: int) -> np.ndarray:
    return np.full(160, value, dtype=np.int16)


def sender(
    clock: FakeClock, wire: Wire, route: list[tuple[str, int] | None], *, send_silence: bool = False
) -> RtpSender:
    """An RtpSender sending to `route[0]` (a one-element list the test changes; None: may not send)."""
    return RtpSender(
        0x51D,
        PCMU,
        telephone_event_pt=101,
        ptime_ms=20,
        send_silence=send_silence,
        clock=clock,
        transmit=wire,
        route=lambda: route[0],
        first_sequence=65534,
    )


def receiver(clock: FakeClock) -> RtpReceiver:
    return RtpReceiver(
        PCMU, telephone_event_pt=101, ptime_ms=20, jitter_target_ms=0, jitter_max_ms=300, clock=clock
    )


async def running_pacer(clock: FakeClock, *members: Metronome | RtpSender) -> Pacer:
    pacer = Pacer.join(members[0], 20, clock)
    for m in members[1:]:
        assert Pacer.join(m, 20, clock) is pacer
    await clock.advance(0)  # the ticker task starts and takes its t0
    return pacer


async def leave(pacer: Pacer, *members: Metronome | RtpSender) -> None:
    for m in members:
        pacer.leave(m)
    for _ in range(3):
        await asyncio.sleep(0)
    assert not pacer.running


# -- the pacer ----------------------------------------------------------------------------------
async def test_ticks_fall_on_a_fixed_grid_however_late_each_wake_up_is() -> None:
    clock = FakeClock()
    m = Metronome(clock)
    t0 = clock.now()
    pacer = await running_pacer(clock, m)
    late_steps = [0.023, 0.019, 0.031, 0.007, 0.025, 0.04, 0.013, 0.029] * 10  # every wake-up is late
    for step in late_steps:
        await clock.stall(step)
    elapsed = clock.now() - t0
    assert len(m.ticks) == pacer.n == int(elapsed / PERIOD + 1e-9)  # no tick lost, none gained: no drift
    for k, (deadline, at) in enumerate(m.ticks, start=1):
        assert deadline == pytest.approx(t0 + k * PERIOD, abs=1e-9)  # the grid, not "previous + period"
        assert -1e-9 <= at - deadline < MAX_STALL
    assert m.skipped == []
    await leave(pacer, m)


async def test_a_punctual_loop_ticks_exactly_once_per_period() -> None:
    clock = FakeClock()
    m = Metronome(clock)
    pacer = await running_pacer(clock, m)
    await clock.advance(1.0)
    assert len(m.ticks) == 50
    assert all(at == pytest.approx(deadline, abs=1e-9) for deadline, at in m.ticks)
    await leave(pacer, m)


async def test_after_a_stall_the_missed_ticks_are_skipped_once_and_the_grid_goes_on() -> None:
    clock = FakeClock()
    m = Metronome(clock)
    t0 = clock.now()
    pacer = await running_pacer(clock, m)
    await clock.advance(0.1)
    assert len(m.ticks) == 5
    await clock.stall(0.5)  # the event loop was blocked for half a second
    assert len(m.ticks) == 6  # one tick for the slot just passed, not a burst of 25
    (skipped,) = m.skipped
    deadline, at = m.ticks[-1]
    assert deadline == pytest.approx(t0 + (6 + skipped) * PERIOD, abs=1e-9)
    assert -1e-9 <= at - deadline < PERIOD
    assert pacer.n == 6 + skipped
    await clock.advance(0.1)
    assert len(m.ticks) == 11
    assert [d for d, _ in m.ticks[6:]] == pytest.approx([t0 + (6 + skipped + k) * PERIOD for k in range(1, 6)])
    await leave(pacer, m)


async def test_a_stall_shorter_than_max_stall_is_caught_up_tick_by_tick() -> None:
    clock = FakeClock()
    m = Metronome(clock)
    pacer = await running_pacer(clock, m)
    await clock.stall(0.15)
    assert len(m.ticks) == 7 and m.skipped == []
    await leave(pacer, m)


async def test_a_member_whose_tick_raises_does_not_stop_the_others() -> None:
    class Broken(Metronome):
        def tick(self, deadline: float) -> None:
            raise RuntimeError("broken session")

    clock = FakeClock()
    good, bad = Metronome(clock), Broken(clock)
    pacer = await running_pacer(clock, bad, good)
    await clock.advance(0.1)
    assert len(good.ticks) == 5 and pacer.running
    await leave(pacer, bad, good)


async def test_members_on_one_clock_and_ptime_share_a_pacer_and_the_last_one_out_stops_it() -> None:
    clock, other_clock = FakeClock(), FakeClock()
    a, b = Metronome(clock), Metronome(clock)
    pacer = await running_pacer(clock, a, b)
    on_other_clock, at_30ms = Metronome(other_clock), Metronome(clock)
    others = [Pacer.join(on_other_clock, 20, other_clock), Pacer.join(at_30ms, 30, clock)]
    assert pacer not in others and others[0] is not others[1]
    await clock.advance(0.06)
    assert (len(a.ticks), len(b.ticks), len(at_30ms.ticks), len(on_other_clock.ticks)) == (3, 3, 2, 0)
    pacer.leave(a)
    assert pacer.running
    await leave(pacer, b)
    again = Pacer.join(a, 20, clock)
    assert again is not pacer  # a fresh ticker after the last one left
    await leave(again, a)
    await leave(others[0], on_other_clock)
    await leave(others[1], at_30ms)


# -- reading on the pacer's clock ---------------------------------------------------------------
async def test_read_frame_returns_one_frame_per_tick_and_a_reader_far_behind_is_resynchronised() -> None:
    clock = FakeClock()
    m = Metronome(clock)
    rx = receiver(clock)
    pacer = await running_pacer(clock, m)
    first = asyncio.ensure_future(rx.read_frame(pacer))
    await clock.advance(0)
    assert not first.done()  # waits for the next tick
    await clock.advance(PERIOD)
    frame = first.result() if first.done() else None
    assert frame is not None and len(frame) == 160
    await clock.advance((RESYNC_TICKS + 25) * PERIOD)  # the consumer stopped reading for a second
    assert await rx.read_frame(pacer) is not None  # at once: the slot it is owed...
    after = asyncio.ensure_future(rx.read_frame(pacer))
    await clock.advance(0)
    assert not after.done()  # ...but no burst of the 50 it missed
    await clock.advance(PERIOD)
    assert after.done()
    rx.close()
    assert await rx.read_frame(pacer) is None
    await leave(pacer, m)


# -- symmetric RTP ------------------------------------------------------------------------------
def test_the_first_packet_latches_media_onto_its_real_source() -> None:
    latch = SourceLatch()
    latch.set_sdp(PEER)  # what the peer's SDP said (its address behind a NAT, say)
    assert (latch.remote, latch.latched) == (PEER, False)
    assert latch.accept(NAT, ssrc=7, seq=100, now=0.0)
    assert (latch.remote, latch.latched) == (NAT, True)


def test_another_source_is_refused_while_the_latched_one_keeps_talking() -> None:
    latch = SourceLatch()
    assert latch.accept(NAT, 7, 100, now=0.0)
    t = 0.0
    for seq in range(500, 520):  # an intruder in sequence, while the peer sends every 0.9 s
        t += 0.3
        if seq % 3 == 0:
            assert latch.accept(NAT, 7, 100 + seq, now=t)
        assert not latch.accept(OTHER, 9, seq, now=t)
    assert latch.remote == NAT


def test_after_a_second_of_silence_a_new_source_takes_over_with_three_packets_in_sequence() -> None:
    latch = SourceLatch()
    assert latch.accept(NAT, 7, 100, now=0.0)
    quiet = RELATCH_AFTER + 0.1
    assert not latch.accept(OTHER, 9, 50, now=quiet)
    assert not latch.accept(OTHER, 9, 52, now=quiet)  # a gap: probation starts again
    assert not latch.accept(OTHER, 8, 53, now=quiet)  # another SSRC: again
    assert not latch.accept(OTHER, 9, 54, now=quiet)
    assert not latch.accept(OTHER, 9, 55, now=quiet)
    assert latch.remote == NAT
    assert latch.accept(OTHER, 9, 56, now=quiet)  # the third in sequence
    assert (latch.remote, latch.latched) == (OTHER, True)
    assert not latch.accept(NAT, 7, 101, now=quiet + 0.5)  # and now the old one is the stranger


def test_sequence_numbers_wrap_during_probation() -> None:
    latch = SourceLatch()
    latch.accept(NAT, 7, 1, now=0.0)
    results = [latch.accept(OTHER, 9, seq, now=5.0) for seq in (65534, 65535, 0)]
    assert results == [False, False, True]


def test_a_new_sdp_address_starts_latching_over_and_the_same_one_again_keeps_it() -> None:
    latch = SourceLatch()
    assert latch.set_sdp(PEER)
    latch.accept(NAT, 7, 1, now=0.0)
    assert not latch.set_sdp(PEER)  # re-INVITE for hold/resume: same SDP address
    assert (latch.remote, latch.latched) == (NAT, True)
    assert latch.set_sdp(OTHER)  # the media moved
    assert (latch.remote, latch.latched) == (OTHER, False)
    assert latch.accept(PEER, 11, 1, now=0.1)  # not latched: the first packet latches at once
    assert latch.set_sdp(None) and latch.remote is None  # 0.0.0.0: no address (old-style hold)


# -- the sender ---------------------------------------------------------------------------------
async def test_timestamps_advance_every_tick_sequence_numbers_every_packet_marker_after_a_gap() -> None:
    clock = FakeClock()
    wire = Wire(clock)
    route: list[tuple[str, int] | None] = [PEER]
    tx = sender(clock, wire, route)
    tx.write(np.concatenate([level(1000)] * 3))
    for _ in range(5):  # three frames, then two ticks with nothing queued (send_silence=False)
        tx.tick(clock.now())
    route[0] = None
    tx.write(level(2000))
    tx.tick(clock.now())  # may not send: the frame waits
    route[0] = PEER
    tx.tick(clock.now())
    pkts = wire.rtp()
    assert [p.sequence for p in pkts] == [65534, 65535, 0, 1]  # one per packet
    assert [p.timestamp - pkts[0].timestamp for p in pkts] == [0, 160, 320, 6 * 160]  # one frame per tick
    assert [p.marker for p in pkts] == [True, False, False, True]
    assert all(a == PEER for _, _, a in wire.sent) and tx.output_queued_ms == 0


async def test_a_partial_last_frame_is_padded_with_silence_and_silence_is_sent_when_asked() -> None:
    clock = FakeClock()
    wire = Wire(clock)
    tx = sender(clock, wire, [PEER], send_silence=True)
    tx.write(level(3000)[:100])
    tx.tick(clock.now())
    tx.tick(clock.now())
    first, second = (PCMU.decode(p.payload) for p in wire.rtp())
    assert np.all(np.abs(first[:100] - 3000) < 100) and not first[100:].any()
    assert not second.any() and len(second) == 160


async def test_lateness_is_measured_against_the_tick_deadline_on_the_clock() -> None:
    clock = FakeClock()
    wire = Wire(clock)
    tx = sender(clock, wire, [PEER], send_silence=True)
    deadline = clock.now()
    await clock.stall(0.008)
    tx.tick(deadline)  # 8 ms late: within half a ptime
    await clock.stall(0.027)
    tx.tick(deadline + 0.010)  # 25 ms late
    tx.tick(deadline + 0.030)  # early (a tick run back to back after a late one): not late
    assert tx.late_sends == 1 and tx.max_lateness == pytest.approx(0.025)


async def test_skipped_ticks_advance_the_timestamp_and_mark_the_next_packet() -> None:
    clock = FakeClock()
    wire = Wire(clock)
    tx = sender(clock, wire, [PEER], send_silence=True)
    tx.tick(clock.now())
    tx.skip_ticks(20)
    tx.tick(clock.now())
    a, b = wire.rtp()
    assert b.timestamp - a.timestamp == 21 * 160 and b.marker and b.sequence == a.sequence + 1
    assert tx.skipped_ticks == 20


async def test_digits_wait_while_nothing_may_be_sent_then_go_out_whole_between_audio_frames() -> None:
    clock = FakeClock()
    wire = Wire(clock)
    route: list[tuple[str, int] | None] = [None]
    tx = sender(clock, wire, route, send_silence=True)
    tx.write(np.concatenate([level(1000)] * 20))
    sending = asyncio.ensure_future(tx.send_dtmf("5", duration_ms=60))
    await asyncio.sleep(0)
    for _ in range(10):
        tx.tick(clock.now())  # on hold: neither the digit nor audio goes out
    assert wire.sent == [] and not sending.done()
    route[0] = PEER
    for _ in range(8):  # five event packets, then the 60 ms pause (audio goes on meanwhile)
        tx.tick(clock.now())
        await clock.advance(0)
    assert not sending.done()
    tx.tick(clock.now())
    await clock.advance(0)
    assert sending.done()  # after the pause
    pkts = wire.rtp()
    events = [p for p in pkts if p.payload_type == 101]
    assert [parse_event(p.payload).end for p in events] == [False, False, True, True, True]
    assert pkts[:5] == events and [p.payload_type for p in pkts[5:]] == [0] * 4  # the digit, then audio
    assert len({p.timestamp for p in events}) == 1 and [p.marker for p in events] == [True] + [False] * 4
    assert tx.dtmf_packets_sent == 5


async def test_digits_not_yet_sent_fail_with_the_given_error() -> None:
    clock = FakeClock()
    tx = sender(clock, Wire(clock), [None])
    sending = asyncio.ensure_future(tx.send_dtmf("12"))
    await asyncio.sleep(0)
    tx.fail_pending_dtmf(RuntimeError("closed"))
    with pytest.raises(RuntimeError, match="closed"):
        await sending


# -- RTCP ---------------------------------------------------------------------------------------
@dataclass
class Rtcp:
    clock: FakeClock
    wire: Wire
    tx: RtpSender
    rx: RtpReceiver
    reporter: RtcpReporter

    def reports(self) -> list[SenderReport | ReceiverReport]:
        out = []
        for _, data, _ in self.wire.sent:
            packet = parse_rtcp(data)[0]
            assert isinstance(packet, (SenderReport, ReceiverReport))
            out.append(packet)
        return out


def rtcp(interval: float = 1.0) -> Rtcp:
    clock = FakeClock()
    wire = Wire(clock)
    tx = sender(clock, Wire(clock), [PEER], send_silence=True)
    rx = receiver(clock)
    reporter = RtcpReporter(
        0x51D, "test@example", interval=interval, sender=tx, receiver=rx, clock=clock, transmit=wire
    )
    return Rtcp(clock, wire, tx, rx, reporter)


async def test_reports_go_every_half_to_one_and_a_half_intervals() -> None:
    r = rtcp(interval=1.0)
    r.rx.latch.set_sdp(PEER)
    start = r.clock.now()
    r.reporter.start()
    await r.clock.advance(60.0)
    times = [start] + [t for t, _, _ in r.wire.sent]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 40 <= len(gaps) <= 120
    assert all(0.5 <= g <= 1.5 for g in gaps)
    assert max(gaps) - min(gaps) > 0.2  # randomised, not a fixed period (RFC 3550 §6.2)
    await r.reporter.stop()
    await r.clock.advance(10.0)
    assert len(r.wire.sent) == len(gaps)


async def test_an_interval_of_zero_sends_no_periodic_reports() -> None:
    r = rtcp(interval=0)
    r.rx.latch.set_sdp(PEER)
    r.reporter.start()
    await r.clock.advance(30.0)
    assert r.wire.sent == []


async def test_a_sender_report_when_we_sent_since_the_last_report_else_a_receiver_report() -> None:
    r = rtcp()
    r.rx.latch.set_sdp(PEER)
    r.reporter.send_report()
    r.tx.tick(r.clock.now())
    r.tx.tick(r.clock.now())
    await r.clock.stall(0.5)
    r.reporter.send_report()
    r.reporter.send_report()
    rr, sr, rr_again = r.reports()
    assert isinstance(rr, ReceiverReport) and isinstance(rr_again, ReceiverReport)
    assert isinstance(sr, SenderReport) and (sr.packet_count, sr.octet_count) == (2, 320)
    assert sr.rtp_timestamp == (r.tx.last_sent_ts + 4000) & 0xFFFFFFFF  # 0.5 s past the last packet sent
    assert r.reporter.sent == 3 and r.reporter.last_sent is not None and r.reporter.last_sent.kind == "RR"


async def test_reports_go_where_the_peers_rtcp_comes_from_else_where_the_sdp_says() -> None:
    r = rtcp()
    rep, latch = r.reporter, r.rx.latch
    assert rep.destination() is None  # no remote yet: nowhere
    latch.set_sdp(PEER)
    assert rep.destination() == (PEER[0], PEER[1] + 1)  # RTP port + 1
    rep.set_sdp_address((PEER[0], 40009))
    assert rep.destination() == (PEER[0], 40009)  # a=rtcp:40009
    rep.set_sdp_address(PEER)  # a=rtcp-mux: wherever RTP goes, latched
    latch.accept(NAT, 7, 1, now=0.0)
    assert rep.destination() == NAT
    rr = ReceiverReport(0xF00, []).pack()
    rep.receive(rr, (OTHER[0], 9))  # RTCP from another host than the RTP peer: not learned
    assert rep.destination() == NAT
    rep.receive(rr, (NAT[0], 61001))
    assert rep.destination() == (NAT[0], 61001)  # symmetric RTCP
    rep.forget_source()  # the RTP peer moved
    assert rep.destination() == NAT
    assert rep.received == 2 and rep.invalid == 0
    rep.receive(b"\x80\xc8garbage", NAT)
    assert rep.invalid == 1


def test_port_candidates_are_even_ports_of_the_range_from_a_random_start_wrapping_around() -> None:
    from parley.sip.rtp_session import port_candidates

    evens = [20002, 20004, 20006, 20008, 20010]  # even ports with an odd neighbour in the range
    ports = port_candidates((20001, 20011), 200)
    s = evens.index(ports[0])
    assert ports == evens[s:] + evens[:s]  # every one once, from a random start, wrapping around
    big = port_candidates((20000, 40000), 200)
    assert len(set(big)) == 200 and all(p % 2 == 0 and 20000 <= p < 40000 for p in big)
    with pytest.raises(ValueError, match="no even port"):
        port_candidates((20001, 20002), 10)
