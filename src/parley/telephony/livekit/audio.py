"""The room transport's audio adapter: LiveKit SDK `AudioFrame`s ↔ the engine's mono int16 frames.

LiveKit rooms carry Opus at 48 kHz; the SDK hands out and takes `rtc.AudioFrame`s (int16, interleaved).
`InboundAudio` turns the caller's frames (any rate, any channel count, any size) into the engine's fixed
frames at the agent's rate; `OutboundAudio` turns the agent's audio (agent rate, any length) into 10 ms
48 kHz `rtc.AudioFrame`s for an `rtc.AudioSource`. Both resample with soxr through `media.resample.Resampler`
(stream state kept across frames) and keep no more than one partial frame. Pure: no connection, no event
loop; the SDK types are only constructed and read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from parley.media.resample import Resampler, WindowedResampler

if TYPE_CHECKING:
    from livekit import rtc

ROOM_RATE = 48_000  # what LiveKit's Opus tracks carry
OUT_FRAME_MS = 10  # what AudioSource is fed in (WebRTC's own frame size)


def to_mono(frame: rtc.AudioFrame) -> np.ndarray:
    """The frame's samples as mono int16 (channels averaged)."""
    n, ch = frame.samples_per_channel, frame.num_channels
    pcm = np.frombuffer(frame.data, dtype=np.int16, count=n * ch)
    if ch == 1:
        return pcm
    return pcm.reshape(n, ch).mean(axis=1).round().astype(np.int16)


def to_frame(pcm: np.ndarray, sample_rate: int) -> rtc.AudioFrame:
    """Mono int16 samples as an SDK `AudioFrame`."""
    from livekit import rtc

    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected mono int16 PCM, got dtype {pcm.dtype} shape {pcm.shape}")
    return rtc.AudioFrame(pcm.tobytes(), sample_rate, 1, pcm.size)


class _Chunker:
    """Cuts a stream of samples into fixed-size frames, keeping the remainder."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rest = np.zeros(0, dtype=np.int16)

    def push(self, pcm: np.ndarray) -> list[np.ndarray]:
        data = np.concatenate((self._rest, pcm)) if self._rest.size else pcm
        whole = data.size // self.size * self.size
        self._rest = data[whole:].copy()
        return [data[i : i + self.size] for i in range(0, whole, self.size)]

    def tail(self) -> np.ndarray | None:
        """The partial frame, padded with silence (None when there is none)."""
        if not self._rest.size:
            return None
        out = np.zeros(self.size, dtype=np.int16)
        out[: self._rest.size] = self._rest
        self._rest = np.zeros(0, dtype=np.int16)
        return out

    @property
    def pending(self) -> int:
        return int(self._rest.size)


class InboundAudio:
    """Caller audio from the room → the engine's frames (`frame_ms` of mono int16 at `agent_rate`)."""

    def __init__(self, agent_rate: int, frame_ms: int = 20) -> None:
        self.agent_rate = agent_rate
        self.frame_samples = agent_rate * frame_ms // 1000
        self._chunker = _Chunker(self.frame_samples)
        self._resampler: WindowedResampler | None = None
        self.samples_in = 0

    def push(self, frame: rtc.AudioFrame) -> list[np.ndarray]:
        """The engine frames completed by this SDK frame (often none or one)."""
        if self._resampler is None or self._resampler.from_rate != frame.sample_rate:
            # the first frame, or the far end changed rate: a new stream (the old filter tail is dropped)
            self._resampler = WindowedResampler(frame.sample_rate, self.agent_rate)
        mono = to_mono(frame)
        self.samples_in += mono.size
        return self._chunker.push(self._resampler.process(mono))


class OutboundAudio:
    """Agent audio (mono int16 at `agent_rate`) → 10 ms SDK frames at `room_rate` for an `AudioSource`."""

    def __init__(self, agent_rate: int, room_rate: int = ROOM_RATE) -> None:
        self.agent_rate = agent_rate
        self.room_rate = room_rate
        self._resampler = Resampler(agent_rate, room_rate)
        self._chunker = _Chunker(room_rate * OUT_FRAME_MS // 1000)

    def push(self, pcm: np.ndarray) -> list[rtc.AudioFrame]:
        """The 10 ms frames completed by `pcm`."""
        return [to_frame(c, self.room_rate) for c in self._chunker.push(self._resampler.process(pcm))]

    def flush(self) -> list[rtc.AudioFrame]:
        """End of a speech: what the filter still holds and the last partial frame (silence-padded)."""
        frames = self._chunker.push(self._resampler.flush())
        tail = self._chunker.tail()
        if tail is not None:
            frames.append(tail)
        self._resampler = Resampler(self.agent_rate, self.room_rate)
        return [to_frame(c, self.room_rate) for c in frames]

    def reset(self) -> None:
        """Barge-in: drop anything held (filter state and partial frame)."""
        self._resampler = Resampler(self.agent_rate, self.room_rate)
        self._chunker = _Chunker(self._chunker.size)
