"""`AgentVoice`: the agent's words to the line — TTS per sentence, resampled, written to the channel.

A canned text (greeting, reminder, closing line) is said in the pieces a streamed reply of it would be
(`speech_pieces`: a first sentence's opening phrase or a long one's first clause alone, then each
sentence), so it starts as soon
and the TTS cache, warmed with those pieces, answers them (`engine/tts_cache.py`, `CachedTTS`).

It keeps each speech's `SpeechTrack` (which sentence occupies which output samples), so a barge-in knows
what the caller heard, and reports what was said: the agent's `TranscriptEntry` once a speech is over and
each turn's latency marks (`TurnMetrics`) at its first frame out.

A speech's leading silence (TTS engines start with up to ~60 ms of it; piper does) is dropped, up to
`LEAD_TRIM_MS`: the caller hears the first word that much sooner.

`prepare(text)` synthesizes one text ahead of being said (a prefetched answer's first piece, while the
turn detector still waits); `say_sentence` of the same text then plays that audio instead of running the
TTS again. It is only audio for a text in this voice: which words are said is still the reply's choice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
import numpy as np

from parley.engine.channel import MediaChannel
from parley.engine.events import Event, TranscriptEntry
from parley.engine.playout import SentenceSpan
from parley.engine.state import AgentSpeech, WordsChanged
from parley.engine.streams import KeptStream, Spawn, close_stream
from parley.engine.tts_cache import CachedTTS, normalise_text
from parley.media.resample import Resampler
from parley.providers.base import TTS, ProviderError
from parley.providers.text import speech_pieces

#: Samples under this magnitude before a speech's first sound are silence (−50 dBFS).
LEAD_SILENCE = 100
#: At most this much leading silence is dropped per speech (never a quiet first syllable).
LEAD_TRIM_MS = 120


class AgentVoice:
    """Speaks for one conversation over `channel` (at the channel's rate)."""

    def __init__(
        self,
        channel: MediaChannel,
        tts: TTS,
        emit: Callable[[Event], None],
        clock: Callable[[], float],
        turn: Callable[[], int],
    ) -> None:
        self.channel = channel
        self.tts = tts
        self.rate = channel.sample_rate
        self._emit = emit
        self._clock = clock  # media seconds now
        self._turn = turn  # the current turn number (for speech without marks of its own)
        self.cursor = 0  # output samples written so far (never behind what was played)
        self._lead_budget = self.rate * LEAD_TRIM_MS // 1000
        self._prepared: tuple[str, KeptStream[np.ndarray]] | None = None  # (text, its audio) said ahead

    def stop(self) -> int:
        """Drop all queued audio now; returns the samples played so far."""
        self.channel.clear_output()
        self.cursor = self.channel.played_samples
        return self.cursor

    async def say(self, sp: AgentSpeech, texts: list[str], *, filler: bool = False) -> None:
        """Say `texts` in order, each in its `speech_pieces`; a `filler` is never said again on a resume."""
        pieces = [piece for text in texts for piece in speech_pieces(text)]
        sp.track.pending.extend(pieces)
        for piece in pieces:
            sp.track.pending.remove(piece)
            await self.say_sentence(sp, piece, filler=filler)

    def prepare(self, text: str, spawn: Spawn) -> Callable[[], None]:
        """Start synthesising `text` now, for a `say_sentence(text)` to come; returns what discards it.
        One text at a time: preparing another discards the last."""
        self.discard_prepared()
        prepared = (normalise_text(text), KeptStream(self.tts.synthesize(text), spawn, "tts-prepare"))
        self._prepared = prepared

        def discard() -> None:
            if self._prepared is prepared:
                self.discard_prepared()

        return discard

    def discard_prepared(self) -> None:
        """Stop and forget the prepared text's audio (if any)."""
        if self._prepared is not None:
            self._prepared[1].cancel()
            self._prepared = None

    async def say_sentence(self, sp: AgentSpeech, text: str, *, filler: bool = False) -> None:
        """Synthesise one sentence (or piece) and queue its audio, keeping track of its place in the output;
        a text `prepare`d before plays the audio made then.

        A `ProviderError` without a component is the TTS's."""
        if sp.cancelled:
            raise asyncio.CancelledError
        span = sp.track.begin(text, self.cursor, filler=filler)
        prepared = self._prepared  # kept for the text it was made for when this is another one
        if prepared is not None and prepared[0] == normalise_text(text):
            self._prepared = None
            stream = prepared[1].stream()
            if sp.marks is not None:
                sp.marks.tts_prepared = True
        else:
            cached = self.tts.cached_at(text, self.rate) if isinstance(self.tts, CachedTTS) else None
            if cached is not None:  # already at the call's rate: no TTS, no resampling
                if sp.marks is not None and sp.marks.tts_first is None:
                    sp.marks.tts_first = time.perf_counter()
                await self._write(sp, span, cached)
                span.complete = True
                return
            stream = self.tts.synthesize(text)
        resampler = Resampler(self.tts.sample_rate, self.rate)
        try:
            async for chunk in stream:
                if sp.marks is not None and sp.marks.tts_first is None:
                    sp.marks.tts_first = time.perf_counter()
                await self._write(sp, span, resampler.process(chunk))
        except ProviderError as exc:
            exc.component = exc.component or "tts"
            raise
        finally:
            await close_stream(stream)
        await self._write(sp, span, resampler.flush())
        span.complete = True

    async def _write(self, sp: AgentSpeech, span: SentenceSpan, pcm: np.ndarray) -> None:
        if sp.cancelled:
            raise asyncio.CancelledError
        if pcm.size == 0:
            return
        if not sp.started:
            pcm = self._trim_lead(sp, pcm)
            if pcm.size == 0:
                return
        if not sp.started and sp.gate is not None:
            await confirm_words(sp)
        if not sp.started:
            sp.started = True
            sp.first_out = self._clock()
            marks = sp.marks
            if marks is not None and marks.frame_out is None:
                marks.frame_out = time.perf_counter()
                if marks.speech_end is not None and marks.end_of_turn is not None:
                    waited = (marks.end_of_turn - marks.speech_end) * 1000.0
                    marks.voice_to_voice_ms = round(waited + (marks.frame_out - marks.t0) * 1000.0, 1)
                self.report_marks(sp)
        self.cursor += pcm.size
        span.end = self.cursor
        await self.channel.write(pcm)

    def _trim_lead(self, sp: AgentSpeech, pcm: np.ndarray) -> np.ndarray:
        """`pcm` without the silence before the speech's first sound (within the speech's trim budget)."""
        trimmed = sp.lead_trimmed
        budget = self._lead_budget - trimmed
        if budget <= 0:
            return pcm
        loud = np.flatnonzero(np.abs(pcm[:budget].astype(np.int32)) >= LEAD_SILENCE)
        cut = int(loud[0]) if loud.size else min(budget, pcm.size)
        sp.lead_trimmed = trimmed + cut if loud.size == 0 else self._lead_budget
        return pcm[cut:]

    async def played(self, sp: AgentSpeech) -> None:
        """Wait until this speech's last sample has been played out."""
        if sp.started:
            await self.channel.drain()

    def finish(self, sp: AgentSpeech) -> None:
        """A speech played to its end: report it."""
        self.report_marks(sp)
        if not sp.started:
            return
        now = self._clock()
        text = " ".join([*sp.said_before, sp.track.written_text]).strip()
        self._emit(
            TranscriptEntry(
                "agent",
                text,
                round(now if sp.first_out is None else sp.first_out, 3),
                round(now, 3),
                turn=sp.marks.turn if sp.marks else self._turn(),
            )
        )

    def report_cut(self, sp: AgentSpeech, heard: str, t: float, turn: int) -> None:
        """A speech the caller stopped hearing at media time `t`: report the words they heard."""
        start = t if sp.first_out is None else sp.first_out
        self._emit(TranscriptEntry("agent", heard, round(start, 3), round(t, 3), interrupted=True, turn=turn))

    def report_marks(self, sp: AgentSpeech) -> None:
        """Report the speech's turn marks (once)."""
        marks = sp.marks
        if marks is not None and not marks.emitted:
            marks.emitted = True
            self._emit(marks.event())


async def confirm_words(sp: AgentSpeech) -> None:
    """Before a preemptive reply is heard (or acts): wait for the final transcript; `WordsChanged` when it
    says something else than the words the reply was started on."""
    gate = sp.gate
    if gate is None:
        return
    if not await asyncio.shield(gate):
        raise WordsChanged()
    sp.gate = None
