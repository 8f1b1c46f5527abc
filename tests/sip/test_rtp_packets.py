"""RTP and RTCP wire formats (RFC 3550): round trips, field layout, malformed input, receiver statistics."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.sip.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_rtcp,
)
from parley.sip.rtp import RtpError, RtpPacket, is_rtcp, parse_rtp, seq_diff


def test_rtp_header_layout_matches_rfc3550() -> None:
    data = RtpPacket(
        payload_type=8, sequence=0xABCD, timestamp=0x01020304, ssrc=0xDEADBEEF, payload=b"xy", marker=True
    ).serialize()
    assert data == bytes([0x80, 0x88, 0xAB, 0xCD, 1, 2, 3, 4, 0xDE, 0xAD, 0xBE, 0xEF]) + b"xy"


def test_rtp_round_trip_with_csrcs_extension_and_padding() -> None:
    pkt = RtpPacket(
        payload_type=101,
        sequence=65535,
        timestamp=2**32 - 1,
        ssrc=7,
        payload=b"\x01\x02\x03",
        marker=False,
        csrcs=[1, 2],
        extension=(0xBEDE, b"abcd"),
        padding=5,
    )
    data = pkt.serialize()
    assert len(data) == 12 + 8 + 8 + 3 + 5
    back = parse_rtp(data)
    assert back == pkt


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00", "too short"),
        (bytes([0x40, 0]) + bytes(10), "version 1"),
        (bytes([0x82, 0]) + bytes(10) + bytes(4), "CSRC"),
        (bytes([0x90, 0]) + bytes(10) + b"\x00\x00\x00\x05", "extension"),
        (bytes([0xA0, 0]) + bytes(10) + b"\x00\x00\x00\x09", "padding"),
        (bytes([0xA0, 0]) + bytes(10) + b"\x00\x00\x00\x00", "padding"),
    ],
)
def test_malformed_rtp_raises_rtp_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        parse_rtp(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_either_parse_as_rtp_or_raise_rtp_error(data: bytes) -> None:
    try:
        pkt = parse_rtp(data)
    except RtpError:
        return
    assert 0 <= pkt.payload_type <= 127 and len(pkt.payload) <= len(data) - 12


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=200),
    st.booleans(),
    st.lists(st.integers(0, 2**32 - 1), max_size=15),
)
def test_rtp_round_trip_property(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool, csrcs: list[int]
) -> None:
    pkt = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrcs)
    assert parse_rtp(pkt.serialize()) == pkt


def test_rtcp_is_told_apart_from_rtp() -> None:
    rr = ReceiverReport(1).pack()
    assert is_rtcp(rr)
    assert not is_rtcp(RtpPacket(0, 1, 2, 3, b"x" * 160).serialize())
    assert not is_rtcp(b"\x80\xc8\x00")  # too short


def test_seq_diff_wraps() -> None:
    assert seq_diff(1, 65535) == 2
    assert seq_diff(65535, 1) == -2
    assert seq_diff(100, 100) == 0


def test_compound_rtcp_round_trip_and_layout() -> None:
    block = ReportBlock(
        ssrc=0x11,
        fraction_lost=25,
        cumulative_lost=-3,
        highest_seq=70000,
        jitter=42,
        lsr=0x12345678,
        dlsr=65536,
    )
    sr = SenderReport(
        0x22,
        ntp_timestamp=(3900000000 << 32) | 0x80000000,
        rtp_timestamp=160,
        packet_count=5,
        octet_count=800,
        reports=[block],
    )
    data = build_compound([sr, SourceDescription([(0x22, "parley@test")]), Bye([0x22], "done")])
    # SR header: V=2, RC=1, PT=200, length = 6 + 6 words - 1 ... = 12
    assert data[:4] == bytes([0x81, 200, 0, 12])
    assert len(data) % 4 == 0
    parsed = parse_rtcp(data)
    assert parsed[0] == sr
    assert parsed[1] == SourceDescription([(0x22, "parley@test")])
    assert parsed[2] == Bye([0x22], "done")
    # cumulative loss is a signed 24-bit field
    assert struct.unpack_from("!I", data, 28 + 4)[0] & 0xFFFFFF == 0xFFFFFD


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\xc9\x00",
        bytes([0x81, 201, 0, 7]) + bytes(8),
        bytes([0x41, 201, 0, 1]) + bytes(4),
        bytes([0x81, 200, 0, 1]) + bytes(4),
    ],
)
def test_malformed_rtcp_raises_rtcp_error(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_either_parse_as_rtcp_or_raise_rtcp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtcpError:
        pass


def test_unknown_rtcp_types_are_skipped() -> None:
    app = bytes([0x80, 204, 0, 2]) + b"\x00\x00\x00\x01" + b"NAME"
    assert parse_rtcp(app + ReceiverReport(9).pack()) == [ReceiverReport(9)]


def test_reception_stats_count_loss_duplicates_reordering_and_wrap() -> None:
    rs = ReceptionStats(clock_rate=8000)
    rs.reset(ssrc=5, seq=65530)
    kinds = [rs.update(s, None, 0.0) for s in (65530, 65531, 65533, 65532, 65532, 0, 2, 3)]
    assert kinds == ["new", "new", "new", "reordered", "duplicate", "new", "new", "new"]
    assert rs.extended_max == 65536 + 3
    assert rs.expected == 10 and rs.received == 7 and rs.lost == 3  # 65534, 65535 and 1 missing
    block = rs.report_block(now=0.0)
    assert block.fraction_lost == 3 * 256 // 10
    assert block.cumulative_lost == 3 and block.highest_seq == 65539
    assert rs.report_block(now=0.0).fraction_lost == 0  # nothing new since the last report


def test_a_duplicate_is_caught_within_the_last_256_numbers_across_the_wrap() -> None:
    rs = ReceptionStats(clock_rate=8000)
    rs.reset(ssrc=5, seq=65400)
    seqs = [(65400 + i) & 0xFFFF for i in range(400)]  # wraps at 136
    assert all(rs.update(s, None, 0.0) == "new" for s in seqs)
    assert rs.update(seqs[-200], None, 0.0) == "duplicate"  # 200 back, across the wrap
    assert rs.update(seqs[-1], None, 0.0) == "duplicate"
    assert rs.update((seqs[-1] + 1) & 0xFFFF, None, 0.0) == "new"
    assert (rs.duplicates, rs.received) == (2, 401)


def test_reception_stats_restart_after_two_packets_in_sequence_past_a_big_jump() -> None:
    rs = ReceptionStats(clock_rate=8000)
    rs.reset(ssrc=5, seq=10)
    assert [rs.update(s, None, 0.0) for s in (10, 11, 30000, 30001, 30002)] == [
        "new",
        "new",
        "jump",
        "restart",
        "new",
    ]
    assert rs.expected == 2 and rs.lost == 0


def test_reception_jitter_follows_rfc3550_estimator() -> None:
    rs = ReceptionStats(clock_rate=8000)
    rs.reset(ssrc=1, seq=0)
    # packets every 20 ms, but every other one arrives 10 ms late: |D| = 80 timestamp units each time
    for i in range(400):
        rs.update(i, i * 160, i * 0.02 + (0.01 if i % 2 else 0.0))
    assert 9.0 < rs.jitter_ms < 10.5  # converges to 80 units = 10 ms
