"""soxr resampling: exact lengths, pitch kept, streaming equals one-shot in length, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.media.resample import CatchUpResampler, Resampler, WindowedResampler, resample

RATES = [8000, 16000, 22050, 24000, 44100, 48000]


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 10000).astype(np.int16)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize(
    "src,dst", [(8000, 16000), (16000, 8000), (22050, 8000), (24000, 16000), (8000, 22050)]
)
def test_one_shot_keeps_length_ratio_and_pitch(src: int, dst: int) -> None:
    out = resample(tone(440, src), src, dst)
    assert out.dtype == np.int16
    assert len(out) == round(src * dst / src)  # one second in, one second out
    assert abs(peak_hz(out, dst) - 440) < 3


def test_equal_rates_and_bytes_input() -> None:
    pcm = tone(300, 8000, 0.1)
    assert resample(pcm, 8000, 8000) is pcm
    assert np.array_equal(resample(pcm.tobytes(), 8000, 8000), pcm)
    assert len(resample(np.zeros(0, np.int16), 8000, 16000)) == 0


@settings(max_examples=40, deadline=None)
@given(
    src=st.sampled_from(RATES),
    dst=st.sampled_from(RATES),
    sizes=st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=30),
)
@pytest.mark.parametrize("kind", [Resampler, WindowedResampler, CatchUpResampler])
def test_stream_produces_exact_total(kind: type[Resampler], src: int, dst: int, sizes: list[int]) -> None:
    stream = kind(src, dst)
    total_in = sum(sizes)
    pcm = (np.random.default_rng(0).standard_normal(total_in) * 3000).astype(np.int16)
    out, pos = 0, 0
    for n in sizes:
        chunk = stream.process(pcm[pos : pos + n])
        assert chunk.dtype == np.int16
        out += len(chunk)
        pos += n
    out += len(stream.flush())
    assert abs(out - total_in * dst / src) <= 1


def test_stream_of_20ms_frames_sounds_like_one_shot() -> None:
    pcm = tone(1000, 8000)
    stream = Resampler(8000, 16000)
    parts = [stream.process(pcm[i : i + 160]) for i in range(0, len(pcm), 160)] + [stream.flush()]
    out = np.concatenate(parts)
    assert len(out) == 16000
    assert abs(peak_hz(out, 16000) - 1000) < 3


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="int16"):
        resample(np.zeros(10, np.float32), 8000, 16000)
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((10, 2), np.int16), 8000, 16000)
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 16000)
    with pytest.raises(ValueError, match="even length"):
        resample(b"\x00\x01\x02", 8000, 16000)
    stream = Resampler(8000, 16000)
    stream.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        stream.process(np.zeros(160, np.int16))


@pytest.mark.parametrize(
    "src,dst,chunk_ms", [(22050, 8000, 20), (24000, 8000, 67), (16000, 8000, 20), (24000, 16000, 20)]
)
def test_stream_hands_out_audio_with_the_first_chunk(src: int, dst: int, chunk_ms: int) -> None:
    """soxr's HQ stream alone gives nothing for the first 20 ms chunks (22.05 -> 8 kHz: ~80 ms): a TTS
    sentence would start late. The stream's start is primed, and the audio is still the stream's."""
    rng = np.random.default_rng(7)
    pcm = (tone(300, src) // 2 + tone(1700, src) // 4 + rng.normal(0, 300, src)).astype(np.int16)
    step = src * chunk_ms // 1000
    stream = Resampler(src, dst)
    parts = [stream.process(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    out = np.concatenate([*parts, stream.flush()])
    assert parts[0].size >= dst * (chunk_ms - 6) // 1000, "the first chunk's audio comes out at once"
    assert len(out) == dst
    plain = soxr.ResampleStream(src, dst, 1, dtype="int16", quality="HQ")
    ref = np.concatenate(
        [plain.resample_chunk(pcm[i : i + step]) for i in range(0, len(pcm), step)]
        + [plain.resample_chunk(np.zeros(0, np.int16), last=True)]
    )
    assert np.abs(out.astype(np.int32) - ref.astype(np.int32)).max() <= 16  # of ±~7000: inaudible


@pytest.mark.parametrize("src,dst", [(8000, 16000), (48000, 8000), (48000, 16000)])
def test_windowed_stream_hands_out_every_chunk_at_once(src: int, dst: int) -> None:
    """What the STT has heard must be the line up to a few ms ago: soxr's HQ stream holds 8 -> 16 kHz
    back by up to ~110 ms (it hands out bursts), the windowed one by its 5 ms guard, and sounds the same."""
    rng = np.random.default_rng(3)
    pcm = (tone(300, src) // 2 + tone(1700, src) // 4 + rng.normal(0, 300, src)).astype(np.int16)
    step = src // 50
    windowed, plain = WindowedResampler(src, dst), Resampler(src, dst)
    behind = {"windowed": 0.0, "plain": 0.0}
    made = {"windowed": 0, "plain": 0}
    parts = []
    for i in range(0, len(pcm), step):
        for name, stream in (("windowed", windowed), ("plain", plain)):
            out = stream.process(pcm[i : i + step])
            made[name] += out.size
            behind[name] = max(behind[name], ((i + step) * dst / src - made[name]) * 1000 / dst)
            if name == "windowed":
                parts.append(out)
    out = np.concatenate([*parts, windowed.flush()])
    assert behind["windowed"] <= 5.5
    assert behind["plain"] > 30, "the plain stream is the slow one this replaces"
    assert len(out) == dst
    ref = resample(pcm, src, dst)
    assert np.abs(out.astype(np.int32) - ref.astype(np.int32)).max() <= 16  # of ±~7000: inaudible


@pytest.mark.parametrize("src,dst", [(8000, 16000), (48000, 16000)])
def test_catch_up_hands_out_what_the_stream_holds_back(src: int, dst: int) -> None:
    """The STT's resampler runs soxr's cheap stream, which holds up to ~110 ms back; when the words so far
    are asked for, `catch_up()` hands out all but 5 ms of the input, and the audio is the same."""
    rng = np.random.default_rng(5)
    pcm = (tone(300, src) // 2 + rng.normal(0, 300, src)).astype(np.int16)
    step = src // 50
    stream = CatchUpResampler(src, dst)
    parts, made, behind = [], 0, []
    for k, i in enumerate(range(0, len(pcm), step)):
        parts.append(stream.process(pcm[i : i + step]))
        made += parts[-1].size
        if k in (12, 13, 30):  # twice in a row (nothing new held back), and again later
            parts.append(stream.catch_up())
            made += parts[-1].size
            behind.append(((i + step) * dst / src - made) * 1000 / dst)
    out = np.concatenate([*parts, stream.flush()])
    assert max(behind) <= 5.5, behind
    assert len(out) == dst
    assert np.abs(out.astype(np.int32) - resample(pcm, src, dst).astype(np.int32)).max() <= 16
