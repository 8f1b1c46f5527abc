"""The room transport's audio adapter with the SDK's own types (`rtc.AudioFrame`, `AudioFrameEvent` as an
`AudioStream` yields them, a native `rtc.AudioSource`), without a connection."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc

from parley.telephony.livekit.audio import InboundAudio, OutboundAudio, to_frame, to_mono


def tone(freq: float, rate: int, seconds: float, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * rate / pcm.size)


def stereo_frames(mono: np.ndarray, rate: int, frame_ms: int) -> list[rtc.AudioFrameEvent]:
    n = rate * frame_ms // 1000
    out = []
    for i in range(0, mono.size - n + 1, n):
        chunk = mono[i : i + n]
        interleaved = np.stack((chunk, chunk), axis=1).reshape(-1)
        out.append(rtc.AudioFrameEvent(rtc.AudioFrame(interleaved.tobytes(), rate, 2, n)))
    return out


@pytest.mark.parametrize("agent_rate", [8000, 16000, 24000])
def test_room_audio_becomes_engine_frames_at_the_agent_rate(agent_rate: int) -> None:
    caller = tone(440, 48_000, 1.0)
    events = stereo_frames(caller, 48_000, 10)  # what AudioStream yields: 10 ms stereo frames at 48 kHz
    adapter = InboundAudio(agent_rate, frame_ms=20)
    frames = [f for ev in events for f in adapter.push(ev.frame)]
    assert all(f.dtype == np.int16 and f.size == agent_rate // 50 for f in frames)
    # one second in, one second out but for the 5 ms held back and the last partial frame
    assert len(frames) == 49 and adapter.samples_in == 48_000
    assert adapter._chunker.pending + 49 * frames[0].size == round(agent_rate * 0.995)  # exactly 5 ms held
    pcm = np.concatenate(frames)
    assert abs(peak_hz(pcm[agent_rate // 10 :], agent_rate) - 440) < 3
    steady = pcm[agent_rate // 10 : -agent_rate // 10]
    assert 7000 < np.abs(steady).max() < 8500  # level kept (stereo of equal channels averages to the same)


def test_a_rate_change_mid_call_starts_a_new_stream() -> None:
    adapter = InboundAudio(16000)
    first = [f for ev in stereo_frames(tone(300, 48_000, 0.2), 48_000, 10) for f in adapter.push(ev.frame)]
    mono16 = tone(300, 24_000, 0.4)
    second = [f for i in range(0, mono16.size, 240)
              for f in adapter.push(rtc.AudioFrame(mono16[i : i + 240].tobytes(), 24_000, 1, 240))]
    assert first and second and all(f.size == 320 for f in first + second)
    assert abs(peak_hz(np.concatenate(second)[1600:], 16000) - 300) < 5


@pytest.mark.parametrize("agent_rate", [8000, 16000, 22050])
def test_agent_audio_becomes_10ms_48k_sdk_frames(agent_rate: int) -> None:
    speech = tone(1000, agent_rate, 0.5)
    adapter = OutboundAudio(agent_rate)
    frames = []
    for i in range(0, speech.size, 700):  # TTS chunks of any length
        frames += adapter.push(speech[i : i + 700])
    frames += adapter.flush()
    assert all(isinstance(f, rtc.AudioFrame) for f in frames)
    assert {(f.sample_rate, f.num_channels, f.samples_per_channel) for f in frames} == {(48_000, 1, 480)}
    pcm = np.concatenate([to_mono(f) for f in frames])
    assert pcm.size == -(-round(speech.size * 48_000 / agent_rate) // 480) * 480  # every sample, padded to 10 ms
    assert abs(peak_hz(pcm, 48_000) - 1000) < 5


def test_to_frame_refuses_what_is_not_mono_int16() -> None:
    with pytest.raises(ValueError, match="mono int16"):
        to_frame(np.zeros(10, dtype=np.float32), 48_000)
    frame = to_frame(np.arange(-5, 5, dtype=np.int16), 16_000)
    assert (frame.sample_rate, frame.samples_per_channel) == (16_000, 10)
    assert to_mono(frame).tolist() == list(range(-5, 5))


@pytest.mark.realtime  # the SDK plays its queue out on the wall clock: under `nice` the queue drained unseen
async def test_frames_play_into_a_native_audio_source_in_real_time() -> None:
    """The SDK's native AudioSource takes the adapter's frames and plays them out at 48 kHz in real time
    (its queue holds 100 ms, so 300 ms of frames take ~200 ms to capture); clear_queue empties it."""
    source = rtc.AudioSource(48_000, 1, queue_size_ms=100)
    adapter = OutboundAudio(16_000)
    frames = adapter.push(tone(500, 16_000, 0.3)) + adapter.flush()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for frame in frames:
        await source.capture_frame(frame)
    took = loop.time() - start
    assert 0.12 < took < 0.6, took
    assert source.queued_duration > 0.05
    source.clear_queue()
    assert source.queued_duration == 0 or source.queued_duration < 0.11
    await source.aclose()
