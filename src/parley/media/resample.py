"""Sample-rate conversion with soxr, for the edges of a call (8 kHz phone, 16 kHz STT, 22.05/24 kHz TTS).

Audio is mono int16 numpy. `resample` converts a whole buffer; `Resampler` converts a stream chunk
by chunk and, after `flush()`, has produced exactly `round(samples_in * to_rate / from_rate)` samples.
"""

from __future__ import annotations

import math

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


#: A one-shot conversion of a window of input is off near the window's edges (it assumes silence beyond
#: them): this much of its end is held back, and this much of its start is context only. Inside, it is
#: within a few LSB of the stream's own output.
PRIME_GUARD_MS = 5
PRIME_CONTEXT_MS = 10


class Resampler:
    """Streaming converter for one direction of one call; keeps filter state between chunks.

    soxr's HQ stream hands its output out in blocks (e.g. 22.05 → 8 kHz in 20 ms chunks: nothing for the
    first four, then ~70 ms at once), which would hold the start of a TTS sentence back for later chunks.
    So while the stream is behind, each chunk is also converted one-shot (over a short window: the chunk,
    `PRIME_CONTEXT_MS` before it) and handed out at once but for its last `PRIME_GUARD_MS`; the stream's
    own samples take over where those end once it has caught up. The first audio leaves with the first
    chunk; after `flush()` exactly `round(samples_in * to_rate / from_rate)` samples have been produced.
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
        common = math.gcd(from_rate, to_rate)
        self._in_period, self._out_period = from_rate // common, to_rate // common  # aligned instants
        self._guard = to_rate * PRIME_GUARD_MS // 1000
        self._context = to_rate * PRIME_CONTEXT_MS // 1000
        self._window: Pcm | None = _EMPTY  # recent input while priming (None: the stream has caught up)
        self._window_start = 0  # input index of its first sample (a multiple of the input period)
        self._made = 0  # samples the stream has produced
        self._given = 0  # samples handed out

    def process(self, chunk: Pcm | bytes) -> Pcm:
        """Convert the next chunk; may return fewer (or more) samples than the exact ratio."""
        if self._flushed:
            raise RuntimeError("Resampler was flushed; create a new one for a new stream")
        arr = _as_int16(chunk)
        if self._stream is None:
            return arr
        if arr.size == 0:
            return _EMPTY.copy()
        fresh = self._continue(self._stream.resample_chunk(arr))
        if self._window is None:
            return fresh
        if self._given and self._made >= self._given:  # caught up: the stream alone from now on
            self._window = None
            return fresh
        primed = self._prime(arr)
        return np.concatenate((fresh, primed)) if fresh.size else primed

    def _prime(self, arr: Pcm) -> Pcm:
        assert self._window is not None
        window = np.concatenate((self._window, arr))
        first_out = self._window_start // self._in_period * self._out_period
        out: Pcm = soxr.resample(window, self.from_rate, self.to_rate, quality="HQ")
        ready = out[self._given - first_out : max(self._given - first_out, out.size - self._guard)]
        self._given += ready.size
        # keep what the next conversion needs: from CONTEXT before the next sample to give, period-aligned
        keep_out = max(0, self._given - self._context)
        periods = min(keep_out // self._out_period, (self._window_start + window.size) // self._in_period)
        start = max(self._window_start, periods * self._in_period)
        self._window = window[start - self._window_start :].copy()
        self._window_start = start
        return ready

    def _continue(self, made: Pcm) -> Pcm:
        """The part of the stream's new output not handed out yet."""
        start = self._made
        self._made += made.size
        fresh = made[min(made.size, max(0, self._given - start)) :]
        self._given += fresh.size
        return fresh

    def flush(self) -> Pcm:
        """End of stream: the samples still held in the filter."""
        if self._flushed:
            return _EMPTY.copy()
        self._flushed = True
        if self._stream is None:
            return _EMPTY.copy()
        self._window = None
        return self._continue(self._stream.resample_chunk(_EMPTY, last=True))


class WindowedResampler(Resampler):
    """A stream converter without the stream's block delay, for audio that is judged as it arrives (the
    caller's words to the STT, a room's caller audio): every chunk is converted one-shot (soxr HQ) over
    itself and `PRIME_CONTEXT_MS` of input before it, and handed out but for its last `PRIME_GUARD_MS`
    (the priming mode of `Resampler`, kept for the whole stream). soxr's HQ stream holds back up to
    ~155 ms going 48 → 8 kHz and 12–114 ms going 8 → 16 kHz (it hands out ~100 ms bursts); this holds
    back 5 ms. After `flush()` exactly `round(samples_in * to_rate / from_rate)` samples were produced."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        super().__init__(from_rate, to_rate)
        self._stream = None  # the one-shot conversions are the output: no stream to feed
        self._converting = from_rate != to_rate
        self._taken = 0  # input samples

    def process(self, chunk: Pcm | bytes) -> Pcm:
        if self._flushed:
            raise RuntimeError("Resampler was flushed; create a new one for a new stream")
        arr = _as_int16(chunk)
        if not self._converting or arr.size == 0:
            return arr
        self._taken += arr.size
        return self._prime(arr)

    def flush(self) -> Pcm:
        if self._flushed:
            return _EMPTY.copy()
        self._flushed = True
        window = self._window
        if not self._converting or window is None or window.size == 0:
            return _EMPTY.copy()
        first_out = self._window_start // self._in_period * self._out_period
        out: Pcm = soxr.resample(window, self.from_rate, self.to_rate, quality="HQ")
        total = round(self._taken * self.to_rate / self.from_rate)
        ready = out[self._given - first_out : max(self._given - first_out, total - first_out)]
        self._given += ready.size
        return ready


class CatchUpResampler(Resampler):
    """soxr's HQ stream (~3 µs a 20 ms chunk), which holds its output back by up to ~110 ms, plus
    `catch_up()`: when the audio so far is needed now (the STT asked for the words so far), the part the
    stream still holds is converted one-shot and handed out but for its last `PRIME_GUARD_MS` (the
    priming mode of `Resampler`, until the stream has caught up again). Converting every chunk one-shot
    (`WindowedResampler`) costs ~65 µs a chunk; this costs that once per `catch_up()`."""

    #: Input kept for `catch_up()`: more than the stream ever holds back, plus the context.
    RECENT_MS = 250

    def __init__(self, from_rate: int, to_rate: int) -> None:
        super().__init__(from_rate, to_rate)
        self._recent: Pcm = _EMPTY
        self._keep = from_rate * self.RECENT_MS // 1000
        self._taken = 0  # input samples

    def process(self, chunk: Pcm | bytes) -> Pcm:
        arr = _as_int16(chunk)
        out = super().process(arr)
        if self._stream is not None and arr.size:
            self._taken += arr.size
            recent = np.concatenate((self._recent, arr)) if self._recent.size else arr.copy()
            self._recent = recent[-self._keep :]
        return out

    def catch_up(self) -> Pcm:
        """What the stream still holds back, converted now (all but the last `PRIME_GUARD_MS`)."""
        if self._stream is None or self._flushed or self._window is not None:
            return _EMPTY.copy()  # nothing to convert, or already handing out each chunk at once
        recent_start = self._taken - self._recent.size
        need = max(0, self._given - self._context) * self.from_rate // self.to_rate
        start = need // self._in_period * self._in_period
        if start < recent_start:
            return _EMPTY.copy()  # further behind than remembered (never seen): the stream will hand it out
        self._window = self._recent[start - recent_start :].copy()
        self._window_start = start
        return self._prime(_EMPTY)
