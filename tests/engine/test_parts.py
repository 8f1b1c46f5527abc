"""The engine's small parts on their own: speech segmentation, what-was-heard tracking, playout queue."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from parley.engine.channel import PlayoutBuffer
from parley.engine.listener import Listener, sub_frame_levels
from parley.engine.playout import SpeechTrack
from parley.engine.turn.segmenter import SegmentEvent, SpeechSegmenter
from tests.engine.fakes import CallerAudio, EnergyVAD, ToneSTT


def feed(seg: SpeechSegmenter, pattern: str, window_ms: float = 20.0) -> list[tuple[float, SegmentEvent]]:
    """`pattern`: one character per window, `#` speech, `.` silence."""
    out = []
    for i, c in enumerate(pattern):
        event = seg.update(1.0 if c == "#" else 0.0, (i + 1) * window_ms / 1000, window_ms)
        if event is not None:
            out.append((round((i + 1) * window_ms / 1000, 3), event))
    return out


def test_utterance_is_confirmed_then_ends_after_the_silence() -> None:
    seg = SpeechSegmenter(min_speech_ms=100, end_silence_ms=200)
    events = feed(seg, "..#####....." + "." * 10)
    assert events == [
        (0.06, SegmentEvent.ONSET),
        (0.14, SegmentEvent.CONFIRMED),
        (0.34, SegmentEvent.END_OF_TURN),
    ]
    assert seg.ended is not None
    assert seg.ended.start == pytest.approx(0.04) and seg.ended.last_voiced == pytest.approx(0.14)


def feed_levels(seg: SpeechSegmenter, windows: list[tuple[float, list[float]]], window_ms: float = 32.0
                ) -> list[tuple[float, SegmentEvent]]:
    """`windows`: (VAD probability, sub-frame levels) per window."""
    out = []
    for i, (p, levels) in enumerate(windows):
        event = seg.update(p, (i + 1) * window_ms / 1000, window_ms, levels)
        if event is not None:
            out.append((round((i + 1) * window_ms / 1000, 3), event))
    return out


def test_the_silence_counts_from_where_the_sound_stopped_not_where_the_vad_let_go() -> None:
    # 10 windows of speech (level 3000), then the sound stops at 0.328 s (one loud sub-frame into window
    # 11), but the VAD's probability decays over three more windows (0.4 ≥ release): the silence is
    # counted from the sound's end, so 200 ms of it are reached at 0.528 s, not ~0.63 s.
    seg = SpeechSegmenter(min_speech_ms=100, end_silence_ms=200)
    loud, quiet = [3000.0] * 4, [5.0] * 4
    windows = [(0.9, loud)] * 10 + [(0.4, [3000.0, 5.0, 5.0, 5.0])] + [(0.4, quiet)] * 2 + [(0.0, quiet)] * 10
    events = feed_levels(seg, windows)
    assert events[-1] == (0.544, SegmentEvent.END_OF_TURN)  # the first window end at or past 0.528 s
    assert seg.ended is not None and seg.ended.last_voiced == pytest.approx(0.328)


def test_while_the_vad_still_hears_speech_the_quiet_of_the_sound_is_counted() -> None:
    # the same speech: the sound stops 8 ms into window 11 (at 0.328 s); the VAD's probability stays
    # above its release for two more windows, and meanwhile the segmenter says how long it has been quiet
    seg = SpeechSegmenter(min_speech_ms=100, end_silence_ms=200)
    loud, quiet = [3000.0] * 4, [5.0] * 4
    quiet_ms = []
    windows = [(0.9, loud)] * 10 + [(0.4, [3000.0, 5.0, 5.0, 5.0])] + [(0.4, quiet)] * 2
    for i, (p, levels) in enumerate(windows):
        seg.update(p, (i + 1) * 0.032, 32.0, levels)
        quiet_ms.append(seg.quiet_ms)
    assert quiet_ms[:10] == [0.0] * 10
    assert quiet_ms[10:] == [pytest.approx(24), pytest.approx(56), pytest.approx(88)]
    seg.update(0.9, 0.448, 32.0, loud)
    assert seg.quiet_ms == 0.0, "the sound is back"


def test_on_a_noisy_line_nothing_is_dated_back() -> None:
    # the same speech over noise at −26 dB (level 150 > 1 % of 3000): the VAD's last voiced window counts
    seg = SpeechSegmenter(min_speech_ms=100, end_silence_ms=200)
    loud, noise = [3000.0] * 4, [150.0] * 4
    windows = [(0.9, loud)] * 10 + [(0.4, [3000.0, 150.0, 150.0, 150.0])] + [(0.4, noise)] * 2
    windows += [(0.0, noise)] * 10
    events = feed_levels(seg, windows)
    assert seg.ended is not None and seg.ended.last_voiced == pytest.approx(0.416)
    assert events[-1] == (0.64, SegmentEvent.END_OF_TURN)


def test_sub_frame_levels_are_each_quarter_s_rms_in_order() -> None:
    """Where in a VAD window the sound stopped: a loud quarter, a half as loud one, a square wave, silence."""
    window = np.concatenate([np.full(120, 8000), np.full(120, -4000), np.tile([1000, -1000], 60),
                             np.zeros(120)]).astype(np.int16)
    assert sub_frame_levels(window) == pytest.approx([8000.0, 4000.0, 1000.0, 0.0], abs=1e-3)


def test_click_shorter_than_min_speech_is_discarded() -> None:
    seg = SpeechSegmenter(min_speech_ms=100, end_silence_ms=500)
    assert feed(seg, "##" + "." * 30) == [(0.02, SegmentEvent.ONSET), (0.34, SegmentEvent.DISCARDED)]
    assert not seg.in_speech


def test_short_pause_inside_an_utterance_does_not_end_the_turn() -> None:
    seg = SpeechSegmenter(min_speech_ms=60, end_silence_ms=200)
    events = feed(seg, "#####" + "....." + "#####" + "." * 12)
    assert [e for _, e in events] == [SegmentEvent.ONSET, SegmentEvent.CONFIRMED, SegmentEvent.END_OF_TURN]
    assert seg.ended is not None and seg.ended.voiced_ms == 200


def test_heard_text_follows_the_samples_played() -> None:
    track = SpeechTrack(8000)
    a = track.begin("Hello there.", 0)
    a.end, a.complete = 8000, True
    b = track.begin("We open at nine every weekday.", 8000)
    b.end, b.complete = 24000, True
    assert track.heard(4000) == ("Hello", False)
    assert track.heard(8000) == ("Hello there.", False)
    assert track.heard(16000) == ("Hello there. We open at nine", False)
    assert track.heard(24000) == ("Hello there. We open at nine every weekday.", True)
    assert track.unheard(16000) == ["We open at nine every weekday."]


def test_playout_buffer_counts_played_samples_and_clears_at_once() -> None:
    async def run() -> None:
        buf = PlayoutBuffer(8000)
        assert buf.pull(160) is None
        buf.write(np.arange(1, 401, dtype=np.int16))
        first = buf.pull(160)
        assert first is not None and first[0] == 1 and buf.played_samples == 160
        assert buf.queued_ms == 30.0
        assert buf.clear() == 240
        assert buf.pull(160) is None and buf.played_samples == 160
        await asyncio.wait_for(buf.drain(), 0.1)
        buf.write(np.ones(100, np.int16))
        tail = buf.pull(160)
        assert tail is not None and tail[:100].all() and not tail[100:].any() and buf.played_samples == 260

    asyncio.run(run())


async def test_the_turn_audio_is_taken_without_copying_and_built_at_the_model_s_rate_later() -> None:
    """On the event loop the end-of-turn model's audio is only a list of the frames heard (no join, no
    resampling: that is the decision thread's work); built, it is the utterance with its pre-roll at 16 kHz."""
    stt = ToneSTT({440.0: "hello"})
    listener = Listener(8000, EnergyVAD(), SpeechSegmenter(min_speech_ms=100, end_silence_ms=700),
                        stt.stream(), stt_rate=16000)
    caller = CallerAudio(2.0).say(440, 0.4, 0.8)
    frames = [caller.pcm[i : i + 160] for i in range(0, caller.pcm.size, 160)]
    for n, frame in enumerate(frames[:80]):  # 1.6 s: speech from 0.4 to 1.2 s, then 0.4 s of silence
        await listener.feed(frame, (n + 1) * 0.02)

    audio = listener.turn_audio()
    assert all(any(kept is frame for frame in frames) for kept in audio.frames)  # the frames themselves
    assert audio.sample_rate == 8000
    heard = np.concatenate(audio.frames)
    assert 0.8 + 0.4 < heard.size / 8000 <= 0.3 + 0.8 + 0.4  # pre-roll, the utterance, the silence so far
    wide = audio.at(16000)
    assert wide.dtype == np.int16 and wide.size == 2 * heard.size
    spectrum = np.abs(np.fft.rfft(wide.astype(np.float32)))
    assert abs(float(np.argmax(spectrum)) * 16000 / wide.size - 440) < 5  # the same voice, at the model's rate
    assert audio.at(8000).tobytes() == heard.tobytes()
