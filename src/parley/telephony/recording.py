"""Call recording: caller on the left channel, agent on the right, one 16-bit WAV per call.

Frames are written as they are heard, so the two channels stay aligned on the call's media clock and a
recording survives a crash up to its last frame (the WAV header is fixed up on close).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


class Recorder:
    """Writes `add(caller, agent)` frame pairs into a stereo WAV."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sample_rate = sample_rate
        self._wav = wave.open(str(path), "wb")
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self.frames = 0

    def add(self, caller: np.ndarray, agent: np.ndarray | None) -> None:
        """Append one inbound frame and the agent samples played during it (padded/cut to match)."""
        n = caller.size
        right = np.zeros(n, dtype=np.int16)
        if agent is not None and agent.size:
            right[: min(n, agent.size)] = agent[:n]
        stereo = np.empty(2 * n, dtype=np.int16)
        stereo[0::2] = caller
        stereo[1::2] = right
        self._wav.writeframesraw(stereo.tobytes())
        self.frames += n

    def close(self) -> Path:
        """Finish the file; returns its path."""
        self._wav.close()
        return self.path
