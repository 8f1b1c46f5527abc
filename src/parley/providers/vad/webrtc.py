"""WebRTC VAD via `webrtcvad-wheels`: a few microseconds per frame, but it takes loud noise for speech.

Use it as a cheap gate or where CPU is scarce, not as the turn-taking decision on noisy lines
(see docs/providers.md for measured figures). It answers 0 or 1 per 10, 20 or 30 ms frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.providers.base import VAD, Capabilities, Pcm
from parley.providers.options import ProviderOptions

if TYPE_CHECKING:
    from parley.settings import Settings

RATES = (8000, 16000, 32000, 48000)
FRAME_MS = (10, 20, 30)


class WebRtcVAD(VAD):
    """The `webrtc` VAD provider; `aggressiveness` 0 (lenient) … 3 (strict)."""

    name = "webrtc"
    capabilities = Capabilities(sample_rates=RATES)

    def __init__(self, sample_rate: int = 16000, *, frame_ms: int = 30, aggressiveness: int = 3,
                 threshold: float = 0.5) -> None:
        import webrtcvad

        if sample_rate not in RATES:
            raise ValueError(f"webrtc VAD works at {', '.join(map(str, RATES))} Hz, not {sample_rate}")
        if frame_ms not in FRAME_MS:
            raise ValueError(f"webrtc VAD frames are 10, 20 or 30 ms, not {frame_ms}")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"webrtc VAD aggressiveness is 0..3, not {aggressiveness}")
        self.threshold = threshold
        self._aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        self.sample_rate = sample_rate
        self.window_samples = sample_rate * frame_ms // 1000

    def probability(self, window: Pcm) -> float:
        """1.0 when the frame holds speech (by WebRTC's judgement), else 0.0."""
        if len(window) != self.window_samples:
            raise ValueError(f"webrtc VAD needs windows of {self.window_samples} samples, got {len(window)}")
        return 1.0 if self._vad.is_speech(window.tobytes(), self.sample_rate) else 0.0

    def reset(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(self._aggressiveness)


def create(spec: ProviderOptions, *, settings: Settings) -> WebRtcVAD:
    """Factory used by the registry: options `sample_rate`, `frame_ms`, `aggressiveness`."""
    opts = spec.options
    unknown = set(opts) - {"sample_rate", "frame_ms", "aggressiveness"}
    if unknown:
        raise ValueError(f"webrtc: unknown option(s) {', '.join(sorted(unknown))}")
    return WebRtcVAD(
        int(opts.get("sample_rate", 16000)),
        frame_ms=int(opts.get("frame_ms", 30)),
        aggressiveness=int(opts.get("aggressiveness", 3)),
        threshold=spec.threshold,
    )
