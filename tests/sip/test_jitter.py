"""Jitter buffer on a controlled clock: reorder, duplicates, loss concealment, late drop, bounded delay."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.media.codecs import get_codec
from parley.sip.jitter import JitterBuffer

PCMU = get_codec("PCMU")


def level_payload(level: int, n: int = 160) -> bytes:
    """A packet whose every sample decodes to about `level` (so frames can be told apart)."""
    return PCMU.encode(np.full(n, level, dtype=np.int16))


def frame_level(frame: np.ndarray) -> int:
    return int(np.median(frame))


def make(**kw: int) -> JitterBuffer:
    return JitterBuffer(decode=PCMU.decode, frame_samples=160, sample_rate=8000, **kw)


def play(jb: JitterBuffer, start: float, frames: int) -> list[int]:
    return [frame_level(jb.frame(start + 0.02 * i)) for i in range(frames)]


def test_waits_for_the_target_delay_then_plays_in_sequence_order() -> None:
    jb = make(target_ms=60)
    order = [0, 2, 1, 3, 5, 4]  # reordered on the way
    for k, seq in enumerate(order):
        assert jb.push(100 + seq, level_payload(1000 * (seq + 1)), arrival=0.001 * k) == "ok"
    assert frame_level(jb.frame(0.03)) == 0  # still inside the reorder window: silence
    levels = play(jb, 0.06, 6)
    assert [round(v, -3) for v in levels] == [1000, 2000, 3000, 4000, 5000, 6000]
    assert jb.concealed == 0 and jb.played == 6


def test_duplicate_is_dropped_and_counted() -> None:
    jb = make(target_ms=0)
    assert jb.push(1, level_payload(1000), 0.0) == "ok"
    assert jb.push(1, level_payload(9000), 0.0) == "duplicate"
    assert jb.push(2, level_payload(2000), 0.0) == "ok"
    assert [round(v, -3) for v in play(jb, 0.0, 2)] == [1000, 2000]
    assert jb.duplicates == 1


def test_a_lost_packet_is_concealed_with_a_fading_copy_of_the_last_one() -> None:
    jb = make(target_ms=0)
    for seq in (1, 3):
        jb.push(seq, level_payload(4000), 0.0)
    first, hidden, third = (jb.frame(0.02 * i) for i in range(3))
    assert abs(frame_level(first) - 4000) < 200
    assert 1500 < np.mean(hidden) < 3900  # same waveform, lower gain: not a click of silence
    assert abs(frame_level(third) - 4000) < 200
    assert jb.concealed == 1 and jb.played == 2


def test_packet_arriving_after_its_slot_is_late_and_dropped() -> None:
    jb = make(target_ms=0)
    jb.push(1, level_payload(1000), 0.0)
    jb.push(3, level_payload(3000), 0.0)
    play(jb, 0.0, 2)  # 1 played, 2 concealed
    assert jb.push(2, level_payload(2000), 0.05) == "late"
    assert jb.late == 1
    assert round(frame_level(jb.frame(0.06)), -3) == 3000


def test_underrun_fades_to_silence_and_a_new_talkspurt_prefetches_again() -> None:
    jb = make(target_ms=40)
    jb.push(1, level_payload(3000), 0.0)
    out = play(jb, 0.04, 8)
    assert round(out[0], -3) == 3000
    assert out[-1] == 0  # concealment faded out after a few frames, then silence
    assert jb.underruns == 1 and jb.concealed == 0  # nothing was lost: the sender just stopped
    jb.push(2, level_payload(5000), 1.0)
    assert frame_level(jb.frame(1.02)) == 0  # new talkspurt waits for its own prefetch
    assert round(frame_level(jb.frame(1.04)), -3) == 5000


def test_delay_stays_bounded_when_too_much_audio_piles_up() -> None:
    jb = make(target_ms=60, max_ms=200)
    for seq in range(50):  # 1 s of audio in one burst
        jb.push(seq, level_payload(100 * (seq + 1)), 0.0)
    assert jb.depth * 0.02 <= 0.2
    assert jb.overflow_dropped >= 40
    assert frame_level(jb.frame(0.1)) > 100 * 40  # plays recent audio, not the stale start


def test_non_audio_sequence_numbers_are_not_taken_as_loss() -> None:
    jb = make(target_ms=0)
    jb.push(1, level_payload(1000), 0.0)
    jb.push_gap(2, 0.0)  # e.g. a telephone-event packet
    jb.push(3, level_payload(3000), 0.0)
    assert [round(v, -3) for v in play(jb, 0.0, 2)] == [1000, 3000]
    assert jb.concealed == 0


def test_30ms_packets_are_cut_into_20ms_frames_without_losing_samples() -> None:
    jb = make(target_ms=0)
    ramp = np.arange(0, 240 * 4, dtype=np.int16) * 8  # 4 packets of 30 ms
    for i in range(4):
        jb.push(i, PCMU.encode(ramp[240 * i : 240 * (i + 1)]), 0.0)
    out = np.concatenate([jb.frame(0.02 * i) for i in range(6)])
    assert np.array_equal(out, PCMU.decode(PCMU.encode(ramp)))


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        make(target_ms=500, max_ms=100)


@settings(max_examples=100, deadline=None)
@given(st.permutations(list(range(12))), st.lists(st.integers(0, 11), max_size=4))
def test_any_arrival_order_within_the_window_plays_back_exactly(order: list[int], dups: list[int]) -> None:
    """Property: packets reordered and duplicated inside the reorder window come out in order, intact."""
    jb = make(target_ms=60)
    ramp = (np.arange(160 * 12, dtype=np.int32) * 13 % 20000 - 10000).astype(np.int16)
    payloads = [PCMU.encode(ramp[160 * i : 160 * (i + 1)]) for i in range(12)]
    for k, seq in enumerate(order + dups):
        jb.push(500 + seq, payloads[seq], arrival=0.001 * k)
    out = np.concatenate([jb.frame(0.06 + 0.02 * i) for i in range(12)])
    assert np.array_equal(out, PCMU.decode(b"".join(payloads)))
    assert jb.duplicates == len(dups) and jb.concealed == 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.booleans(), st.floats(0, 0.5), st.binary(max_size=200)), max_size=40
    ),
    st.lists(st.floats(0, 1.0), min_size=1, max_size=30),
)
def test_frames_are_always_whole_whatever_arrives(
    pushes: list[tuple[int, bool, float, bytes]], reads: list[float]
) -> None:
    jb = JitterBuffer(decode=PCMU.decode, frame_samples=160, sample_rate=8000, target_ms=40, max_ms=120)
    for seq, gap, at, payload in pushes:
        if gap:
            jb.push_gap(seq, at)
        else:
            jb.push(seq, payload, at)
    for now in sorted(reads):
        frame = jb.frame(now)
        assert frame.dtype == np.int16 and len(frame) == 160


# --- adaptive delay (min_ms) ------------------------------------------------------------------------


def distinct_levels(n: int, start: int) -> list[int]:
    """`n` levels from `start` up whose packets decode to n different levels (μ-law is coarse)."""
    levels: list[int] = []
    seen: set[int] = set()
    level = start
    while len(levels) < n:
        decoded = frame_level(PCMU.decode(level_payload(level)))
        if decoded not in seen:
            seen.add(decoded)
            levels.append(level)
        level += 1
    return levels


def steady_stream(jb: JitterBuffer, levels: list[int], *, spread: float = 0.0,
                  phase: float = 0.005) -> list[float]:
    """Feed one packet per 20 ms (arrival `phase` ms into each tick, ± `spread` alternately) and read one
    frame per tick; returns, per packet that played, the delay from its arrival to its frame (s)."""
    arrivals: dict[int, float] = {}
    heard: list[float] = []
    for k, level in enumerate(levels):
        t = 0.02 * k
        arrival = t + phase + (spread if k % 2 else -spread)
        arrivals[frame_level(PCMU.decode(level_payload(level)))] = arrival
        jb.push(k, level_payload(level), arrival)
        got = frame_level(jb.frame(t + 0.02))
        if got in arrivals:
            heard.append(t + 0.02 - arrivals[got])
    return heard


def test_a_steady_stream_is_heard_sooner_once_its_jitter_is_known() -> None:
    fixed, adaptive = make(target_ms=60), make(target_ms=60, min_ms=20)
    # a pause, then speech: quiet packets (skippable), then loud ones, every packet told apart
    levels = distinct_levels(30, 60) + distinct_levels(50, 1000)
    late_fixed = steady_stream(fixed, levels)[-20:]
    late_adaptive = steady_stream(adaptive, levels)[-20:]
    assert min(late_fixed) >= 0.055  # the fixed buffer keeps its 60 ms however clean the line
    assert max(late_adaptive) <= 0.036  # the adaptive one came down to about one packet
    assert adaptive.skipped >= 1 and adaptive.concealed == 0 and adaptive.underruns == 0


def test_speech_is_never_skipped_to_shorten_the_delay() -> None:
    jb = make(target_ms=60, min_ms=20)
    levels = distinct_levels(60, 600)  # speech from the first packet: nothing quiet
    steady_stream(jb, levels)
    assert jb.skipped == 0 and jb.concealed == 0


def test_a_jittery_line_keeps_more_delay_and_a_late_packet_raises_it() -> None:
    jb = make(target_ms=60, min_ms=20)
    steady_stream(jb, [100] * 60, spread=0.008)  # ±8 ms around the tick: J ≈ 16 ms
    assert jb.delay >= 0.05
    calm = make(target_ms=60, min_ms=20)
    steady_stream(calm, [100] * 60)
    assert calm.delay == pytest.approx(0.02)
    calm.push(0, level_payload(100), 2.0)  # long gone: late
    assert calm.late == 1 and calm.delay == pytest.approx(0.04)


def test_rejects_a_floor_above_the_target() -> None:
    with pytest.raises(ValueError):
        make(target_ms=40, min_ms=60)
