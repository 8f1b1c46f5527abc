"""Audio helpers for the provider tests."""

from __future__ import annotations

import numpy as np

from parley.media.resample import resample


def telephone(pcm: np.ndarray, rate: int) -> np.ndarray:
    """What a caller's voice sounds like after a phone line (8 kHz, G.711 μ-law when the codec module
    exists), back at 16 kHz for the STT."""
    narrow = resample(pcm, rate, 8000)
    try:
        from parley.media import g711
    except ImportError:
        pass
    else:
        narrow = g711.ulaw_decode(g711.ulaw_encode(narrow))
    return resample(narrow, 8000, 16000)


def rms(pcm: np.ndarray) -> float:
    """Root-mean-square level in int16 units."""
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def words(text: str) -> set[str]:
    """Lower-case words without punctuation."""
    return {w.strip(".,!?;:'\"").lower() for w in text.split()}
