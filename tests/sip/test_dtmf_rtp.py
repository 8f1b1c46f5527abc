"""DTMF: RFC 4733 packets sent and received over real UDP (with and without the marker bit, end-packet
retransmissions, lost starts), SIPp's sample captures, and SIP INFO bodies."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.sip.dtmf import (
    DtmfError,
    DtmfEvent,
    DtmfInfo,
    DtmfReceiver,
    event_payloads,
    parse_dtmf_info,
    parse_event,
)
from parley.sip.rtp import RtpPacket
from tests.eventually import eventually
from tests.sip import test_rtp_session as helpers
from tests.sip.test_rtp_session import level, pcap_rtp_payloads, raw_peer, read_frames, tone

pytestmark = pytest.mark.realtime  # paced RTP / timeouts on the wall clock: make test runs it in the foreground half

sessions = helpers.sessions  # the fixture: started RtpSessions, closed afterwards

SIPP_DIR = Path("/usr/share/sip-tester")


def te(seq: int, ts: int, event: int, end: bool, duration: int, marker: bool = False) -> bytes:
    return RtpPacket(101, seq, ts, 0xD7, DtmfEvent(event, end, 10, duration).pack(), marker).serialize()


# -- payload format -----------------------------------------------------------------------------
def test_event_payload_layout() -> None:
    assert DtmfEvent(11, True, 10, 800).pack() == bytes([11, 0x8A, 0x03, 0x20])
    assert parse_event(bytes([5, 0x0A, 0x01, 0x40])) == DtmfEvent(5, False, 10, 320)
    with pytest.raises(DtmfError):
        parse_event(b"\x05")


def test_event_payloads_for_one_digit() -> None:
    pkts = event_payloads("#", duration_samples=800, step=160)  # 100 ms at 8 kHz, 20 ms packets
    events = [parse_event(p) for p, _ in pkts]
    assert [m for _, m in pkts] == [True] + [False] * 6
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {11}
    with pytest.raises(DtmfError, match="not a DTMF digit"):
        event_payloads("x", 800, 160)


def test_receiver_reports_each_event_once_whatever_the_marker_says() -> None:
    rx = DtmfReceiver()
    got = [rx.feed(1, 160, DtmfEvent(5, False, 10, d).pack()) for d in (160, 320)]
    got += [rx.feed(1, 160, DtmfEvent(5, True, 10, 480).pack()) for _ in range(3)]
    got += [rx.feed(1, 9000, DtmfEvent(5, True, 10, 480).pack())]  # same digit again, start lost
    assert got == ["5", None, None, None, None, "5"]


def test_receiver_copes_with_a_sender_that_restamps_every_packet() -> None:
    rx = DtmfReceiver()
    got = [rx.feed(1, 1000 + 160 * k, DtmfEvent(5, k >= 4, 10, 160 * (k + 1)).pack()) for k in range(7)]
    assert got == ["5"] + [None] * 6


def test_the_same_digit_pressed_twice_quickly_counts_twice() -> None:
    rx = DtmfReceiver()
    got = []
    for start, send_ends in ((8000, False), (8000 + 800 + 480, True)):  # first press lost its end packets
        for k in range(5):
            if k >= 2 and not send_ends:
                continue
            got.append(rx.feed(1, start, DtmfEvent(5, k >= 2, 10, 160 * (k + 1)).pack()))
    assert [d for d in got if d] == ["5", "5"]


# -- over UDP -----------------------------------------------------------------------------------
async def test_digits_are_detected_with_and_without_marker_and_end_retransmissions_count_once(
    sessions,
) -> None:
    s = await sessions()
    digits: list[str] = []
    s.on_dtmf = digits.append
    peer = await raw_peer()
    dest = ("127.0.0.1", s.local_port)
    seq = 100
    plan = [
        (5, True, [False, False, True, True, True]),  # textbook: marker on the first packet
        (7, False, [False, False, True, True, True]),  # a provider that never sets the marker bit
        (9, False, [True, True, True]),  # start packets lost: only the three end packets arrive
        (11, True, [True, True, True]),  # '#' that is over at once
    ]
    for n, (event, marker, ends) in enumerate(plan):
        ts = 80000 + 8000 * n
        for k, end in enumerate(ends):
            peer.send(te(seq, ts, event, end, 160 * (k + 1), marker=marker and k == 0), dest)
            seq += 1
        for _ in range(2):  # some audio between the digits, same SSRC and sequence space
            peer.send(RtpPacket(0, seq, ts + 4000, 0xD7, level(1000)).serialize(), dest)
            seq += 1
    await eventually(lambda: len(digits) == 4, what="four digits")
    await read_frames(s, 10)  # play the audio out: DTMF took its sequence numbers, nothing is concealed
    assert digits == ["5", "7", "9", "#"]
    st = s.stats()
    assert st.dtmf_received == 4 and st.lost == 0 and st.concealed == 0
    peer.close()


async def test_sipp_sample_dtmf_captures_are_understood(sessions) -> None:
    s = await sessions()
    digits: list[str] = []
    s.on_dtmf = digits.append
    peer = await raw_peer()
    names = [*"123456789", "star", "pound", "0"]  # in the captures' sequence-number order
    for name in names:
        for data in pcap_rtp_payloads(SIPP_DIR / f"dtmf_2833_{name}.pcap"):
            peer.send(data, ("127.0.0.1", s.local_port))
    await eventually(lambda: len(digits) == 12, what="twelve digits")
    assert "".join(digits) == "123456789*#0"
    peer.close()


async def test_send_dtmf_interleaves_events_with_audio(sessions) -> None:
    s = await sessions()
    rx = await raw_peer()
    s.set_remote("127.0.0.1", rx.port)
    s.write(tone(1000, 2.0))
    await rx.wait_for(lambda: len(rx.received) >= 3)
    queued_before = s.output_queued_ms
    await s.send_dtmf("1#", duration_ms=60)
    await rx.wait_for(lambda: len(rx.received) >= 25)
    pkts = rx.rtp()
    seqs = [p.sequence for p in pkts]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))  # one sequence space
    ev = [(i, p) for i, p in enumerate(pkts) if p.payload_type == 101]
    assert len(ev) == 2 * (2 + 3)  # per digit: 2 updates (20, 40 ms) and the end packet three times
    first, second = ev[:5], ev[5:]
    for group, code in ((first, 1), (second, 11)):
        idx = [i for i, _ in group]
        assert idx == list(range(idx[0], idx[0] + 5))  # no audio inside an event
        events = [parse_event(p.payload) for _, p in group]
        assert {e.event for e in events} == {code}
        assert [e.end for e in events] == [False, False, True, True, True]
        assert [e.duration for e in events] == [160, 320, 480, 480, 480]
        assert [p.marker for _, p in group] == [True, False, False, False, False]
        assert len({p.timestamp for _, p in group}) == 1
    gap = [p for p in pkts[first[-1][0] + 1 : second[0][0]]]
    assert len(gap) >= 3 and all(p.payload_type == 0 for p in gap)  # audio between digits
    after = pkts[second[-1][0] + 1 :]
    assert after and after[0].payload_type == 0
    assert after[0].timestamp - second[0][1].timestamp >= 5 * 160  # the clock ran on during the event
    assert s.output_queued_ms < queued_before  # audio kept playing around the digits
    assert s.stats().dtmf_packets_sent == 10


async def test_two_sessions_carry_digits_end_to_end(sessions) -> None:
    a = await sessions()
    b = await sessions()
    a.set_remote("127.0.0.1", b.local_port)
    b.set_remote("127.0.0.1", a.local_port)
    got: list[str] = []
    b.on_dtmf = got.append
    reader = asyncio.create_task(read_frames(b, 60))
    await a.send_dtmf("0123456789*#ABCD", duration_ms=40)
    await eventually(lambda: len(got) == 16, timeout_s=2, what="sixteen digits")
    assert "".join(got) == "0123456789*#ABCD"
    reader.cancel()


async def test_send_dtmf_rejects_bad_digits_before_sending_any(sessions) -> None:
    s = await sessions()
    with pytest.raises(DtmfError, match="'x'"):
        await s.send_dtmf("12x")
    with pytest.raises(ValueError, match="duration"):
        await s.send_dtmf("1", duration_ms=5)
    assert s.stats().dtmf_packets_sent == 0


# -- SIP INFO -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", DtmfInfo("5", 160)),
        ("Application/DTMF-Relay; charset=utf-8", "Signal= *\nDuration= 250", DtmfInfo("*", 250)),
        ("application/dtmf-relay", "Signal=#\r\n", DtmfInfo("#", None)),
        ("application/dtmf-relay", "Signal=11\r\nDuration=100", DtmfInfo("#", 100)),
        ("application/dtmf-relay", "signal=a", DtmfInfo("A", None)),
        ("application/dtmf", "7", DtmfInfo("7", None)),
        ("application/dtmf", "Signal=9\nDuration=80", DtmfInfo("9", 80)),
    ],
)
def test_sip_info_bodies(ctype: str, body: bytes | str, expected: DtmfInfo) -> None:
    assert parse_dtmf_info(ctype, body) == expected


@pytest.mark.parametrize(
    ("ctype", "body", "message"),
    [
        ("text/plain", "5", "content type"),
        ("application/dtmf-relay", "", "empty"),
        ("application/dtmf-relay", "Duration=100", "no Signal"),
        ("application/dtmf-relay", "Signal=Z", "not a DTMF digit"),
        ("application/dtmf-relay", "Signal=16", "not a digit"),
        ("application/dtmf-relay", "Signal=5\nDuration=soon", "Duration"),
        ("application/dtmf", "55", "not a digit"),
    ],
)
def test_bad_sip_info_bodies_raise_dtmf_error(ctype: str, body: str, message: str) -> None:
    with pytest.raises(DtmfError, match=message):
        parse_dtmf_info(ctype, body)


async def test_an_async_dtmf_handler_is_run(sessions) -> None:
    a = await sessions()
    b = await sessions()
    a.set_remote("127.0.0.1", b.local_port)
    got: list[str] = []
    done = asyncio.Event()

    async def handler(digit: str) -> None:
        got.append(digit)
        done.set()

    b.on_dtmf = handler
    await a.send_dtmf("7", duration_ms=40)
    await asyncio.wait_for(done.wait(), 2)
    assert got == ["7"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["application/dtmf-relay", "application/dtmf", "text/plain"]), st.text(max_size=60))
def test_any_info_body_either_gives_one_digit_or_raises_dtmf_error(ctype: str, body: str) -> None:
    try:
        info = parse_dtmf_info(ctype, body)
    except DtmfError:
        return
    assert len(info.digit) == 1 and info.digit in "0123456789*#ABCD"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=8))
def test_any_telephone_event_payload_either_parses_or_raises_dtmf_error(payload: bytes) -> None:
    rx = DtmfReceiver()
    try:
        digit = rx.feed(1, 0, payload)
    except DtmfError:
        assert len(payload) < 4
        return
    assert digit is None or digit in "0123456789*#ABCD"
