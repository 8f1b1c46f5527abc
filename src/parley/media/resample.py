"""Sample-rate conversion with soxr, for the edges of a call (8 kHz phone, 16 kHz STT, 22.05/24 kHz TTS).

Audio is mono int16 numpy. `resample` converts a whole buffer; `Resampler` converts a stream chunk
by chunk and, after `flush()`, has produced exactly `round(samples_in * to_rate / from_rate)` samples.
"""

from __future__ import annotations

import numpy as np
import soxr

Pcm = np.ndarray

_EMPTY = np.zeros(0, dtype=np.int16)


def _as_int16(pcm: Pcm | bytes) -> Pcm:
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % 2:
            raise ValueError(f"int16 PCM bytes must have an even length, got {len(pcm)}")
        return np.frombuffer(pcm, dtype=np.int16)
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise ValueError(f"expected int16 PCM, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"expected mono PCM (1-D array), got shape {arr.shape}")
    return arr


def _check_rate(name: str, rate: int) -> None:
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")


def resample(pcm: Pcm | bytes, from_rate: int, to_rate: int) -> Pcm:
    """Convert a whole mono int16 buffer from `from_rate` to `to_rate` (same array back if equal rates)."""
    _check_rate("from_rate", from_rate)
    _check_rate("to_rate", to_rate)
    arr = _as_int16(pcm)
    if from_rate == to_rate:
        return arr
    if arr.size == 0:
        return _EMPTY.copy()
    out: Pcm = soxr.resample(arr, from_rate, to_rate, quality="HQ")
    return out


class Resampler:
    """Streaming converter for one direction of one call; keeps filter state between chunks.

    Output lags the input by a few milliseconds (filter delay); `flush()` returns the tail.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        _check_rate("from_rate", from_rate)
        _check_rate("to_rate", to_rate)
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = (
            None
            if from_rate == to_rate
            else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="HQ")
        )
        self._flushed = False

    def process(self, chunk: Pcm | bytes) -> Pcm:
        """Convert the next chunk; may return fewer (or more) samples than the exact ratio."""
        if self._flushed:
            raise RuntimeError("Resampler was flushed; create a new one for a new stream")
        arr = _as_int16(chunk)
        if self._stream is None:
            return arr
        if arr.size == 0:
            return _EMPTY.copy()
        out: Pcm = self._stream.resample_chunk(arr)
        return out

    def flush(self) -> Pcm:
        """End of stream: the samples still held in the filter."""
        if self._flushed:
            return _EMPTY.copy()
        self._flushed = True
        if self._stream is None:
            return _EMPTY.copy()
        tail: Pcm = self._stream.resample_chunk(_EMPTY, last=True)
        return tail
