"""Silero separates speech from hiss and noise bursts; webrtc is a cheap gate that hears speech too."""

from __future__ import annotations

import numpy as np
import pytest

from parley.media.resample import resample
from parley.providers.vad.silero import SileroVAD
from parley.providers.vad.webrtc import WebRtcVAD

SENTENCE = "I would like to book an appointment for Tuesday"


def _decisions(vad, pcm: np.ndarray, threshold: float = 0.5) -> np.ndarray:  # type: ignore[no-untyped-def]
    w = vad.window_samples
    return np.array([vad.probability(pcm[i : i + w]) >= threshold for i in range(0, len(pcm) - w + 1, w)])


def _noises(rate: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    bursts = np.zeros(rate * 3, np.int16)
    for start in range(0, len(bursts), rate // 2):
        bursts[start : start + rate // 5] = (rng.standard_normal(rate // 5) * 10000).astype(np.int16)
    return {
        "hiss": (rng.standard_normal(rate * 3) * 300).astype(np.int16),
        "loud noise": (rng.standard_normal(rate * 3) * 8000).astype(np.int16),
        "noise bursts": bursts,
    }


@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize("gate", [True, False])
def test_silero_separates_speech_from_noise(rate: int, gate: bool, phone_speech) -> None:  # type: ignore[no-untyped-def]
    speech = resample(phone_speech(SENTENCE, "piper"), 16000, rate)
    vad = SileroVAD(rate, gate=gate)
    assert vad.window_samples == (512 if rate == 16000 else 256)
    assert _decisions(vad, speech).mean() > 0.6
    for name, noise in _noises(rate).items():
        vad.reset()
        assert _decisions(vad, noise).mean() < 0.05, name


def test_silero_state_and_bad_windows() -> None:
    vad = SileroVAD(16000)
    window = (np.random.default_rng(1).standard_normal(512) * 3000).astype(np.int16)
    first = vad.probability(window)
    vad.probability(window)
    vad.reset()
    assert vad.probability(window) == pytest.approx(first)
    with pytest.raises(ValueError, match="512 samples"):
        vad.probability(np.zeros(320, np.int16))


def test_webrtc_hears_speech_not_silence(phone_speech) -> None:  # type: ignore[no-untyped-def]
    speech = resample(phone_speech(SENTENCE, "piper"), 16000, 8000)
    vad = WebRtcVAD(8000, frame_ms=20)
    assert vad.window_samples == 160
    assert _decisions(vad, speech).mean() > 0.6
    assert _decisions(vad, np.zeros(8000, np.int16)).mean() == 0.0
    # (it also calls hiss and noise speech: see docs/providers.md — a gate, not the decision)
    with pytest.raises(ValueError, match="aggressiveness"):
        WebRtcVAD(8000, aggressiveness=7)


def test_silero_detectors_share_one_model() -> None:
    def rss_mb() -> float:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024

    SileroVAD(16000)  # the shared model is loaded
    before = rss_mb()
    detectors = [SileroVAD(16000, gate=False) for _ in range(100)]
    window = (np.random.default_rng(2).standard_normal(512) * 3000).astype(np.int16)
    for vad in detectors:
        vad.probability(window)
    assert rss_mb() - before < 30  # 100 calls' detectors; a private model each would take ~1 GB
