"""Caller speech segmentation from VAD probabilities: onset, confirmation, end of turn after a silence.

`SpeechSegmenter` is a pure state machine fed one VAD decision at a time (no I/O, no clock of its own):

* a window at or above `threshold` starts a segment (`ONSET`); once `min_speech_ms` of voiced audio has
  accumulated it is `CONFIRMED` (a real utterance, not a click or a cough);
* a segment that goes quiet before confirmation is `DISCARDED`;
* a confirmed segment followed by `end_silence_ms` of silence ends the caller's turn (`END_OF_TURN`).

Hysteresis: once in speech, windows count as voiced down to `threshold - 0.15`, so a word's soft tail
does not split an utterance.

Where the speech really ended: the VAD's probability decays over a few windows after the last sound, so the
last voiced window ends ~90 ms after the audio does (measured on G.711 speech in five voices). Given each
window's sub-frame levels (`levels`), the segmenter dates the end of speech back to the last sub-frame
within `QUIET_BELOW_PEAK` of the utterance's loudest window (at most `END_CREDIT_MAX_MS`), and counts the
silence from there. On a noisy line no sub-frame is that quiet and nothing is dated back. The same levels
say, while the VAD still hears speech, how long the sound has already been that quiet (`quiet_ms`): the
engine asks for the words that early.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

#: A sub-frame quieter than this fraction of the utterance's loudest window (−40 dB) is silence; the
#: windows after the speech that the VAD still calls voiced are dated back to the last louder sub-frame
#: (bench/latency/vad_end.py, clean G.711 speech: VAD lag median 86 ms → the estimate 2 ms after the true
#: end, earliest 83 ms before it, inside a soft consonant; with noise at 30 dB SNR or worse nothing is
#: dated back).
QUIET_BELOW_PEAK = 0.01
END_CREDIT_MAX_MS = 200.0


class SegmentEvent(Enum):
    ONSET = "onset"
    CONFIRMED = "confirmed"
    DISCARDED = "discarded"
    END_OF_TURN = "end_of_turn"


@dataclass
class Segment:
    """The current (or just finished) caller utterance, in media seconds."""

    start: float
    last_voiced: float
    voiced_ms: float = 0.0
    confirmed: bool = False
    peak: float = 0.0  # the loudest voiced window's loudest sub-frame level


class SpeechSegmenter:
    """Turns per-window speech probabilities into utterance events."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_speech_ms: float = 150.0,
        end_silence_ms: float = 700.0,
        discard_gap_ms: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.release = max(0.05, threshold - 0.15)
        self.min_speech_ms = min_speech_ms
        self.end_silence_ms = end_silence_ms
        self.discard_gap_ms = discard_gap_ms if discard_gap_ms is not None else min(end_silence_ms, 300.0)
        self.segment: Segment | None = None
        self.silence_ms = 0.0
        #: While a confirmed segment's last window was voiced: how long its sound has been quiet (its
        #: sub-frames below `QUIET_BELOW_PEAK` of the loudest), 0 while it sounds; 0 otherwise.
        self.quiet_ms = 0.0
        self._levels: deque[tuple[float, float]] = deque()  # (end time, level) of recent sub-frames

    @property
    def in_speech(self) -> bool:
        """True while a segment is open (voiced now or in its trailing silence)."""
        return self.segment is not None

    @property
    def voiced_now(self) -> bool:
        """True while a segment is open and its last window was voiced."""
        return self.segment is not None and self.silence_ms == 0.0

    @property
    def speech_ms(self) -> float:
        """Voiced milliseconds in the open segment (0 when none)."""
        return self.segment.voiced_ms if self.segment else 0.0

    def update(
        self, probability: float, t_end: float, window_ms: float, levels: Sequence[float] = ()
    ) -> SegmentEvent | None:
        """Feed one window ending at media time `t_end`; returns at most one event. `levels`: the RMS
        of the window's equal sub-frames, in order (optional: without them the silence starts at the
        end of the last voiced window)."""
        loudest = self._keep_levels(t_end, window_ms, levels)
        self.quiet_ms = 0.0
        seg = self.segment
        if seg is None:
            if probability < self.threshold:
                return None
            self.segment = Segment(start=t_end - window_ms / 1000.0, last_voiced=t_end, voiced_ms=window_ms,
                                   peak=loudest)
            self.silence_ms = 0.0
            if window_ms >= self.min_speech_ms:
                self.segment.confirmed = True
                return SegmentEvent.CONFIRMED
            return SegmentEvent.ONSET
        if probability >= self.release:
            seg.voiced_ms += window_ms
            seg.last_voiced = t_end
            self.silence_ms = 0.0
            if probability >= self.threshold:
                seg.peak = max(seg.peak, loudest)
            if not seg.confirmed and seg.voiced_ms >= self.min_speech_ms:
                seg.confirmed = True
                return SegmentEvent.CONFIRMED
            if seg.confirmed and levels:
                self.quiet_ms = self._quiet_run_ms(seg, t_end)
            return None
        if self.silence_ms == 0.0:  # the first quiet window: date the end of speech back
            credit_ms = self._quiet_tail_ms(seg)
            seg.last_voiced -= credit_ms / 1000.0
            self.silence_ms = credit_ms
        self.silence_ms += window_ms
        if not seg.confirmed and self.silence_ms >= self.discard_gap_ms:
            self.segment = None
            self.silence_ms = 0.0
            return SegmentEvent.DISCARDED
        if seg.confirmed and self.silence_ms >= self.end_silence_ms:
            self.silence_ms = 0.0
            self.ended = seg
            self.segment = None
            return SegmentEvent.END_OF_TURN
        return None

    def _keep_levels(self, t_end: float, window_ms: float, levels: Sequence[float]) -> float:
        """Remember the window's sub-frame levels (the last `END_CREDIT_MAX_MS` and a window); returns
        the loudest."""
        if not levels:
            return 0.0
        step = window_ms / 1000.0 / len(levels)
        for i, level in enumerate(levels):
            self._levels.append((t_end - (len(levels) - 1 - i) * step, float(level)))
        horizon = t_end - (END_CREDIT_MAX_MS + 2 * window_ms) / 1000.0
        while self._levels and self._levels[0][0] < horizon:
            self._levels.popleft()
        return float(max(levels))

    def _quiet_tail_ms(self, seg: Segment) -> float:
        """How long before the end of its last voiced window the segment's sound really stopped."""
        if seg.peak <= 0.0:
            return 0.0
        quiet = seg.peak * QUIET_BELOW_PEAK
        limit = min(END_CREDIT_MAX_MS / 1000.0, seg.last_voiced - seg.start)
        for t, level in reversed(self._levels):
            if t > seg.last_voiced + 1e-9:
                continue
            if level >= quiet or seg.last_voiced - t >= limit:
                return round(max(0.0, min(seg.last_voiced - t, limit)) * 1000.0, 3)
        return 0.0

    def _quiet_run_ms(self, seg: Segment, t_end: float) -> float:
        """How long before `t_end` the segment's sound went quiet (0: its last sub-frame is loud)."""
        quiet = seg.peak * QUIET_BELOW_PEAK
        if quiet <= 0.0 or not self._levels or self._levels[-1][1] >= quiet:
            return 0.0
        for t, level in reversed(self._levels):
            if level >= quiet:
                return round((t_end - t) * 1000.0, 3)
        return 0.0  # quiet as far back as the levels go: the VAD decides

    def end_now(self) -> Segment | None:
        """Close the open confirmed segment as an end of turn now (the detector or a key decided);
        returns it (also as `ended`), or None when no confirmed segment is open."""
        seg = self.segment
        if seg is None or not seg.confirmed:
            return None
        self.ended, self.segment, self.silence_ms, self.quiet_ms = seg, None, 0.0, 0.0
        return seg

    ended: Segment | None = None  # the segment that the last END_OF_TURN closed
