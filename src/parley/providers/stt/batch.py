"""`BatchSTTStream`: the stream of an engine that recognises whole utterances (Whisper, OpenAI-style
transcription), with an early decode the engine asks for through `snapshot()`.

The stream buffers the caller's audio. `snapshot()` decodes what was pushed so far and keeps that
decode (a shielded future, so a cancelled caller does not cancel it). While a kept decode exists, every
pushed 20 ms frame is checked against the silence that preceded the snapshot: the engine asks for a
snapshot once the caller's sound has been quiet ~65 ms (or its VAD has heard ~100 ms of silence), so the
quietest 20 ms frame of the last 100 ms before the snapshot is the line's noise floor. A frame louder
than `QUIET_MARGIN` × that floor (at least `SILENCE_RMS`, at most `SPEECH_RMS`) means the caller spoke
again: the kept decode is dropped and the next `snapshot()` or
`end_utterance()` decodes the whole utterance. Trailing silence does not change the words, so
`end_utterance()` after silence only returns the kept result without decoding again.

The level test errs towards "speech": a cough or a click after the snapshot costs a second decode,
never words.

Long utterances (`roll_after_s`): a snapshot taken in one of the caller's pauses is not thrown away when
the caller goes on; it is kept as a candidate. Once the audio since the last committed part is longer
than `roll_after_s`, the latest candidate is committed: its words stand, and later decodes cover only the
audio after it. So the decode at the end of a long turn costs what a short one does (Whisper's short
encoder window) instead of a 30 s window. Cuts fall only in pauses the VAD
heard (≥ ~100 ms of silence), never inside a word; utterances shorter than `roll_after_s` are always
decoded whole.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass

import numpy as np

from parley.providers.base import STT, Pcm, STTStream, Transcript

#: 20 ms frames at 16 kHz; other rates scale the frame (`frame = rate // 50`).
FRAMES_PER_SECOND = 50
#: The audio before a snapshot whose quietest frame is the line's noise floor.
FLOOR_S = 0.1
#: A frame above this many times the noise floor is the caller speaking again (≈ +10 dB).
QUIET_MARGIN = 3.0
#: Thresholds (int16 RMS) for "speaking again": never below −60 dBFS, never above −40 dBFS.
SILENCE_RMS = 30.0
SPEECH_RMS = 300.0


def rms(pcm: Pcm) -> float:
    """Root-mean-square level of int16 `pcm` (0 for no samples)."""
    return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if len(pcm) else 0.0


def frame_levels(pcm: Pcm, frame: int) -> np.ndarray:
    """The RMS of each `frame`-sample frame of `pcm` from its start (a short last frame counts too)."""
    whole = len(pcm) // frame * frame
    levels = np.sqrt((pcm[:whole].astype(np.float32).reshape(-1, frame) ** 2).mean(axis=1))
    return np.append(levels, rms(pcm[whole:])) if len(pcm) > whole else levels


def quietest_frame(pcm: Pcm, frame: int) -> float:
    """The lowest RMS over the whole `frame`-sample frames at the end of `pcm` (its RMS when shorter)."""
    levels = frame_levels(pcm[len(pcm) % frame :], frame)
    return float(levels.min()) if levels.size else rms(pcm)


def loudest_frame(pcm: Pcm, frame: int) -> float:
    """The highest RMS over the `frame`-sample frames of `pcm` (a short last frame counts too)."""
    levels = frame_levels(pcm, frame)
    return float(levels.max()) if levels.size else 0.0


@dataclass
class _Kept:
    """An early decode of samples `start` to `samples`; as the utterance's words, valid while only
    silence followed; as a part of them (a candidate, committed), valid for good."""

    start: int
    samples: int
    speech_rms: float  # a later frame above this means the caller spoke again
    result: asyncio.Future[Transcript]


class BatchSTTStream(STTStream):
    """Buffers one call's utterance; decodes it on `end_utterance()`, or early on `snapshot()`.

    Subclasses implement `_decode(pcm)` (the utterance so far, or its part after the committed ones, at
    `sample_rate`; CPU work in a thread). With `early=False`, `snapshot()` is the default empty interim
    (no early decode). `roll_after_s`: see the module docstring (None: every
    decode is of the whole utterance). `decodes` counts the decodes started, `commits` the parts
    committed (for tests and benchmarks)."""

    def __init__(self, stt: STT, sample_rate: int, *, early: bool = True, roll_after_s: float | None = None
                 ) -> None:
        self._stt = stt
        self._rate = sample_rate
        self._frame = max(1, sample_rate // FRAMES_PER_SECOND)
        self._early = early
        self._roll_after = int(roll_after_s * sample_rate) if roll_after_s else None
        self._chunks: list[Pcm] = []
        self._samples = 0
        self._offset = 0.0  # seconds of audio before the current utterance
        self._kept: _Kept | None = None
        self._committed: list[_Kept] = []  # the utterance's decoded parts, in order
        self._paused: list[_Kept] = []  # decodes made in the caller's pauses, from the last commit on
        self._closed = False
        self.decodes = 0
        self.commits = 0

    @abc.abstractmethod
    async def _decode(self, pcm: Pcm) -> Transcript:
        """Recognise `pcm` (the utterance so far, or its part after the committed ones); an empty-text
        result for silence or noise."""

    async def push(self, pcm: Pcm) -> None:
        if self._closed:
            raise self._stt.error("stream is closed", retryable=False)
        if not len(pcm):
            return
        pcm = np.asarray(pcm, dtype=np.int16)
        self._chunks.append(pcm)
        self._samples += len(pcm)
        kept = self._kept
        if kept is not None and loudest_frame(pcm, self._frame) > kept.speech_rms:
            self._kept = None  # the caller went on talking: the early words are incomplete
            if self._roll_after is not None and kept.start == self._commit_at:
                self._paused.append(kept)  # but they end in a pause: a place to cut a long turn

    @property
    def _commit_at(self) -> int:
        return self._committed[-1].samples if self._committed else 0

    def _roll(self) -> None:
        """A long turn: commit the latest pause decode, so the next decode starts after it."""
        if self._roll_after is None or self._samples - self._commit_at <= self._roll_after:
            return
        usable = [k for k in self._paused if k.start == self._commit_at
                  and not (k.result.done() and (k.result.cancelled() or k.result.exception() is not None))]
        if usable:
            self._committed.append(usable[-1])
            self.commits += 1
        self._paused = []

    def _audio(self) -> Pcm:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.int16)

    def _start(self, pcm: Pcm, committed: list[_Kept] | None = None) -> asyncio.Future[Transcript]:
        """Decode `pcm`: the utterance after the `committed` parts (their words come first)."""
        self.decodes += 1
        parts = list(committed or [])
        future = asyncio.ensure_future(self._decode_after(parts, pcm) if parts else self._decode(pcm))
        future.add_done_callback(_retrieve)
        return future

    async def _decode_after(self, committed: list[_Kept], pcm: Pcm) -> Transcript:
        before = await asyncio.shield(committed[-1].result)  # its words include the parts before it
        words = before.text.strip()
        tail = await self._decode(pcm)  # its words as a prompt measured worse (tiny.en lost more)
        text = " ".join(t for t in (words, tail.text.strip()) if t)
        last = tail if tail.text else before
        return Transcript(text, True, 0.0, 0.0, confidence=last.confidence,
                          language=tail.language or before.language, sentence_end_p=last.sentence_end_p)

    async def snapshot(self) -> Transcript:
        if not self._early or self._closed or not self._samples:
            return await super().snapshot()
        if self._kept is None:
            self._roll()
            start = self._commit_at
            pcm = self._audio()[start:]
            floor = quietest_frame(pcm[-int(FLOOR_S * self._rate) :], self._frame)
            threshold = min(max(SILENCE_RMS, QUIET_MARGIN * floor), SPEECH_RMS)
            self._kept = _Kept(start, self._samples, threshold, self._start(pcm, self._committed))
        kept = self._kept
        result = await asyncio.shield(kept.result)
        return Transcript(result.text, False, self._offset, self._offset + kept.samples / self._rate,
                          confidence=result.confidence, language=result.language,
                          sentence_end_p=result.sentence_end_p)

    async def end_utterance(self) -> Transcript:
        pcm = self._audio()
        if self._kept is None:
            self._roll()
        kept, committed, self._kept = self._kept, self._committed, None
        pending = kept.result if kept is not None else self._start(pcm[self._commit_at :], committed)
        self._chunks, self._samples, self._committed, self._paused = [], 0, [], []
        start = self._offset
        self._offset += len(pcm) / self._rate
        try:
            result = await asyncio.shield(pending)
        except Exception:  # noqa: BLE001 - an early decode failed: decode it whole, that error counts
            if kept is None and not committed:
                raise
            result = await self._start(pcm)
        return Transcript(result.text, True, start, self._offset, confidence=result.confidence,
                          language=result.language, sentence_end_p=result.sentence_end_p)

    async def close(self) -> None:
        self._closed = True
        self._chunks, self._samples, self._kept, self._committed, self._paused = [], 0, None, [], []


def _retrieve(future: asyncio.Future[Transcript]) -> None:
    """Mark a dropped early decode's error as seen (the utterance is decoded again if needed)."""
    if not future.cancelled():
        future.exception()
