"""Caller speech segmentation from VAD probabilities: onset, confirmation, end of turn after a silence.

`SpeechSegmenter` is a pure state machine fed one VAD decision at a time (no I/O, no clock of its own):

* a window at or above `threshold` starts a segment (`ONSET`); once `min_speech_ms` of voiced audio has
  accumulated it is `CONFIRMED` (a real utterance, not a click or a cough);
* a segment that goes quiet before confirmation is `DISCARDED`;
* a confirmed segment followed by `end_silence_ms` of silence ends the caller's turn (`END_OF_TURN`).

Hysteresis: once in speech, windows count as voiced down to `threshold - 0.15`, so a word's soft tail
does not split an utterance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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

    def update(self, probability: float, t_end: float, window_ms: float) -> SegmentEvent | None:
        """Feed one window ending at media time `t_end`; returns at most one event."""
        seg = self.segment
        if seg is None:
            if probability < self.threshold:
                return None
            self.segment = Segment(start=t_end - window_ms / 1000.0, last_voiced=t_end, voiced_ms=window_ms)
            self.silence_ms = 0.0
            if window_ms >= self.min_speech_ms:
                self.segment.confirmed = True
                return SegmentEvent.CONFIRMED
            return SegmentEvent.ONSET
        if probability >= self.release:
            seg.voiced_ms += window_ms
            seg.last_voiced = t_end
            self.silence_ms = 0.0
            if not seg.confirmed and seg.voiced_ms >= self.min_speech_ms:
                seg.confirmed = True
                return SegmentEvent.CONFIRMED
            return None
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

    def end_now(self) -> Segment | None:
        """Close the open confirmed segment as an end of turn now (the detector or a key decided);
        returns it (also as `ended`), or None when no confirmed segment is open."""
        seg = self.segment
        if seg is None or not seg.confirmed:
            return None
        self.ended, self.segment, self.silence_ms = seg, None, 0.0
        return seg

    ended: Segment | None = None  # the segment that the last END_OF_TURN closed
