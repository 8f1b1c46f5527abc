"""`Listener`: the caller's side of a call — audio frames in, utterance events out, speech to the STT.

Per frame: convert to the VAD's rate (soxr's quick converter: the HQ stream hands out audio in ~100 ms
bursts, too late for turn-taking), run the VAD on each complete window, feed the `SpeechSegmenter`.
Only confirmed utterances reach the STT — with 300 ms of pre-roll so the first syllable is not lost,
converted to the STT's rate by a resampler made per utterance (silence is never resampled; soxr's stream
holds up to ~110 ms back, so before a snapshot `catch_up()` hands the STT the line up to ~5 ms ago) — and
the audio up to the end-of-turn decision (the trailing silence lets Whisper decode early).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import soxr

from parley.engine.turn.segmenter import SegmentEvent, SpeechSegmenter
from parley.media.resample import CatchUpResampler
from parley.providers.base import VAD, ProviderError, STTStream

PREROLL_MS = 300
TURN_AUDIO_S = 8.0  # the utterance audio kept for the end-of-turn model (Smart Turn reads the last 8 s)


@dataclass(frozen=True)
class TurnAudio:
    """The open utterance's frames as they came (the call's rate), taken without copying on the event
    loop; `at(rate)` joins and converts them — meant for the thread that runs the end-of-turn model."""

    frames: tuple[np.ndarray, ...]
    sample_rate: int

    def at(self, rate: int) -> np.ndarray:
        """The frames as one int16 array at `rate`."""
        if not self.frames:
            return np.zeros(0, dtype=np.int16)
        pcm = np.concatenate(self.frames)
        return pcm if rate == self.sample_rate else soxr.resample(pcm, self.sample_rate, rate).astype(np.int16)


SUB_FRAMES = 4  # per VAD window (8 ms each at 8 and 16 kHz): where the speech ended, to the segmenter


def sub_frame_levels(window: np.ndarray) -> list[float]:
    """The RMS of the VAD window's `SUB_FRAMES` equal parts, in order."""
    parts = window.astype(np.float32).reshape(SUB_FRAMES, -1)
    # einsum: the sums of squares in one call (np.mean's Python wrapper costs more than the sums)
    rms: np.ndarray = np.sqrt(np.einsum("ij,ij->i", parts, parts) / parts.shape[1])
    return rms.tolist()


class Listener:
    """Segments one call's caller audio and streams its utterances to the STT."""

    def __init__(
        self, sample_rate: int, vad: VAD, segmenter: SpeechSegmenter, stream: STTStream, stt_rate: int
    ) -> None:
        self.sample_rate = sample_rate
        self.vad = vad
        self.segmenter = segmenter
        self.stream = stream
        self.stt_rate = stt_rate
        self.push_failed: ProviderError | None = None  # the STT refused audio during this utterance
        self._to_vad = (
            None
            if vad.sample_rate == sample_rate
            else soxr.ResampleStream(sample_rate, vad.sample_rate, 1, dtype="int16", quality="QQ")
        )
        self._window = vad.window_samples
        self._window_ms = vad.window_samples * 1000.0 / vad.sample_rate
        self._levels = vad.window_samples % SUB_FRAMES == 0
        self._vad_buf = np.zeros(0, dtype=np.int16)
        self._to_stt: CatchUpResampler | None = None
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_samples = 0
        self._preroll_max = sample_rate * PREROLL_MS // 1000
        self._collected: list[np.ndarray] | None = None  # an utterance not confirmed yet
        self._pushing = False
        self._turn_audio: deque[np.ndarray] = deque()  # the open utterance at the call's rate, last 8 s
        self._turn_samples = 0

    async def feed(self, pcm: np.ndarray, now: float) -> list[SegmentEvent]:
        """One frame of caller audio ending at media time `now`; returns the segment events it caused."""
        vad_pcm = pcm if self._to_vad is None else self._to_vad.resample_chunk(pcm)
        buf = np.concatenate((self._vad_buf, vad_pcm)) if self._vad_buf.size else vad_pcm
        w = self._window
        n = buf.size // w
        events: list[SegmentEvent] = []
        to_push: list[np.ndarray] = []
        seg = self.segmenter
        for i in range(n):
            t_end = now - (buf.size - (i + 1) * w) / self.vad.sample_rate
            window = buf[i * w : (i + 1) * w]
            p = self.vad.probability(window)
            # the levels matter only inside an utterance (where its speech ended): none on a quiet line
            wanted = self._levels and (seg.in_speech or p >= seg.threshold)
            levels = sub_frame_levels(window) if wanted else ()
            event = seg.update(p, t_end, self._window_ms, levels)
            if event is None:
                continue
            events.append(event)
            if event is SegmentEvent.ONSET:
                self._collected = list(self._preroll)
                self._turn_audio = deque(self._preroll)
                self._turn_samples = sum(c.size for c in self._turn_audio)
            elif event is SegmentEvent.CONFIRMED:
                to_push.extend(self._collected if self._collected is not None else self._preroll)
                self._collected = None
                self._pushing = True
                self._to_stt = CatchUpResampler(self.sample_rate, self.stt_rate)
            elif event is SegmentEvent.DISCARDED:
                self._collected = None
        self._vad_buf = buf[n * w :].copy() if n else buf.copy()

        end_of_turn = SegmentEvent.END_OF_TURN in events
        if self.segmenter.in_speech:
            self._keep_turn_audio(pcm)
        if self._pushing:
            to_push.append(pcm)
        elif self._collected is not None:
            self._collected.append(pcm)
        if not self._pushing or end_of_turn:
            self._preroll.append(pcm)
            self._preroll_samples += pcm.size
            while self._preroll and self._preroll_samples - self._preroll[0].size >= self._preroll_max:
                self._preroll_samples -= self._preroll.popleft().size
        if to_push:
            await self._push(to_push, last=end_of_turn)
        if end_of_turn:
            self._pushing = False
        return events

    async def catch_up(self) -> None:
        """Hand the STT what the resampler still holds back of the utterance (before a snapshot: the words
        so far must include the last ones)."""
        if not self._pushing or self._to_stt is None or self.push_failed is not None:
            return
        await self._hand(self._to_stt.catch_up())

    def _keep_turn_audio(self, pcm: np.ndarray) -> None:
        self._turn_audio.append(pcm)
        self._turn_samples += pcm.size
        limit = int(TURN_AUDIO_S * self.sample_rate)
        while self._turn_audio and self._turn_samples - self._turn_audio[0].size >= limit:
            self._turn_samples -= self._turn_audio.popleft().size

    def turn_audio(self) -> TurnAudio:
        """The open utterance (with its pre-roll and trailing silence so far), last 8 s: the frames kept
        so far (they are never changed), to be joined and converted off the event loop."""
        return TurnAudio(tuple(self._turn_audio), self.sample_rate)

    async def finish(self) -> None:
        """The turn was ended by a decision, not by the segmenter's silence: hand the STT the rest of
        the utterance (the resampler's tail) and stop streaming until the next confirmed speech."""
        if self._pushing and self._to_stt is not None:
            tail = self._to_stt.flush()
            self._pushing = False
            await self._hand(tail)
        self._pushing = False

    async def _push(self, chunks: list[np.ndarray], *, last: bool) -> None:
        assert self._to_stt is not None
        audio = self._to_stt.process(chunks[0] if len(chunks) == 1 else np.concatenate(chunks))
        if last:
            audio = np.concatenate((audio, self._to_stt.flush()))
        await self._hand(audio)

    async def _hand(self, audio: np.ndarray) -> None:
        """Push `audio` to the STT unless this utterance already failed; a refusal is kept in `push_failed`."""
        if audio.size and self.push_failed is None:
            try:
                await self.stream.push(audio)
            except ProviderError as exc:  # this utterance is lost; the conversation apologises for it
                self.push_failed = exc

    def take_push_failure(self) -> ProviderError | None:
        """The push error of the utterance just ended (and forget it for the next one)."""
        failed, self.push_failed = self.push_failed, None
        return failed
