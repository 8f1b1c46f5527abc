"""End of turn: after a short silence, the audio model and the words decide — pure, time passed in.

One `EndOfTurnDetector` per call. While the caller is quiet after confirmed speech, the conversation
tells it how long the silence is (`silence(silence_ms)`, once per frame) and hands it the results it
asked for (`words_ready`, `model_ready`). Each call returns a `DetectorStep`: what to start now
(`Snapshot`: the STT's words so far; `AskModel`: the Smart Turn model on the utterance audio) and, once
the turn is over, the `TurnVerdict` that ended it. Caller speech (`speech()`) starts over: results for
an earlier silence are ignored.

The rules (`detector: smart_turn`):
* the words are asked for at `SNAPSHOT_AFTER_MS` of silence (so the transcript is ready when the turn
  ends) — or sooner, once the caller's sound has been quiet `SNAPSHOT_AFTER_QUIET_MS` while the VAD
  still hears speech (`quiet()`: its probability decays ~90 ms after the last sound; if the sound comes
  back, that silence's results are stale as after `speech()`) — the audio model at `min_silence_ms`;
* words that say the caller has not finished ("... for", "my number is", an open list) wait up to
  `max_silence_ms`; words asking for time ("hold on", "um") up to `hold_silence_ms` — the audio model
  cannot overrule either;
* words the recogniser itself doubts — the full stop that ends them has P < `UNSURE_END_P` (Whisper
  drops a trailing "and" and writes a hesitant full stop) — are a doubt the audio model cannot overrule:
  the turn ends at `doubt_silence_ms`, so a caller who pauses that long mid-sentence is not cut;
* otherwise the audio model decides: P(finished) ≥ `threshold` ends the turn at once; below it, the model
  is asked again every `REASK_MS` until `doubt_silence_ms` — the model alone is a weak witness (on our
  measured speech it doubts one finished question in four), so its doubt alone waits less than words do;
* a model that first heard an unfinished turn and changes its mind on a re-ask does not end the turn
  when the words carry no final mark (with an STT that punctuates): two doubts against one late "finished"
  wait for `doubt_silence_ms` (a misheard cut sentence — "I am calling because" heard "I am calling the
  card" — looks like this; finished turns rarely do, docs/turn-detection.md part 17);
* whatever is pending, the turn ends at `max_silence_ms` (`hold_silence_ms` after a request for time;
  `doubt_silence_ms` when the words are in and have no objection);
* a model too busy to answer before that limit (`model_busy`: the decisions of many calls queue on a
  short machine) leaves this silence to the words and `end_of_turn_silence_ms`, as if there were no model —
  or, when it already answered below `threshold`, to its earlier doubt.
With `detector: silence` the turn ends after `end_of_turn_silence_ms`, and the words are still fetched
early so the transcript is ready. Without an audio model (not installed, or it failed) a `smart_turn`
detector ends after `end_of_turn_silence_ms` too, unless the words say wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from parley.agents.spec import TurnSpec
from parley.engine.turn.words import WordVerdict, judge

SNAPSHOT_AFTER_MS = 100.0
#: The caller's sound quiet this long (sub-frames 40 dB below the utterance's loudest) is enough to ask
#: for the words, before the VAD's decay says silence: 81 ms after the speech instead of 128 (median),
#: for 0.1 more decodes thrown away per utterance (48 ms: 64 ms after, but 0.8 more; part 12).
SNAPSHOT_AFTER_QUIET_MS = 64.0
REASK_MS = 200.0
#: Below this probability for its final full stop the recogniser is unsure the sentence ended (measured
#: on piper and espeak-ng speech through G.711: 0.20–0.42 where tiny.en dropped a trailing "and",
#: 0.59–0.95 after finished sentences; docs/turn-detection.md part 9).
UNSURE_END_P = 0.5
HOLD_RULES = frozenset({"filler", "pause_phrase", "thinking"})
FINAL_MARKS = (".", "?", "!")


def has_final_mark(text: str | None) -> bool:
    """The transcript ends its last sentence with a full stop, question or exclamation mark."""
    return (text or "").rstrip(" \t\"')]").endswith(FINAL_MARKS)

VerdictKind = Literal["finished", "unfinished", "hold", "timeout", "silence"]


class TurnModel(Protocol):
    """An audio end-of-turn model (Smart Turn): P(the turn is finished) from 16 kHz audio. Blocking."""

    def predict(self, pcm16k: np.ndarray) -> float: ...


@dataclass(frozen=True)
class Snapshot:
    """Ask the STT for the words of the utterance so far (for silence number `gap`)."""

    gap: int


@dataclass(frozen=True)
class AskModel:
    """Run the audio end-of-turn model on the utterance audio (for silence number `gap`)."""

    gap: int


Request = Snapshot | AskModel


@dataclass(frozen=True)
class TurnVerdict:
    """Why a turn ended (or, with `kind` unfinished/hold, why the detector waits).

    `silence_ms`: the silence when it was decided; `probability`: the audio model's last answer;
    `words`: the rule that fired on the transcript (empty when none did); `model_runs`: how often the
    model was asked in this silence; `model_busy`: once, it was too busy to answer in time."""

    kind: VerdictKind
    reason: str
    silence_ms: float
    probability: float | None = None
    words: str = ""
    model_runs: int = 0
    model_busy: bool = False

    @property
    def ends_turn(self) -> bool:
        return self.kind in ("finished", "timeout", "silence")


@dataclass(frozen=True)
class DetectorStep:
    """What to start now, and the verdict when the turn ended (or the detector's view changed)."""

    requests: list[Request] = field(default_factory=list)
    verdict: TurnVerdict | None = None

    @property
    def end(self) -> bool:
        return self.verdict is not None and self.verdict.ends_turn


def judge_turn(probability: float | None, words: WordVerdict, threshold: float) -> tuple[VerdictKind, str]:
    """The combined decision, pure: the words can only say "wait"; the audio model says "finished"."""
    if words.unfinished:
        return ("hold" if words.rule in HOLD_RULES else "unfinished"), words.reason
    if probability is None:
        return "unfinished", "waiting for the audio model"
    if probability >= threshold:
        return "finished", f"the audio model hears a finished turn (p={probability:.2f}) and the words agree"
    return "unfinished", f"the audio model hears an unfinished turn (p={probability:.2f} < {threshold:g})"


class EndOfTurnDetector:
    """The end-of-turn decisions of one call (see the module docstring)."""

    def __init__(self, turn: TurnSpec, language: str | None = "en", *, model: bool = True,
                 punctuated: bool = True) -> None:
        self.spec = turn
        self.language = language
        self.punctuated = punctuated  # the STT ends sentences with a mark (its absence is a doubt)
        self.uses_model = model and turn.detector == "smart_turn"
        self.gap = 0
        self._reset()

    def _reset(self) -> None:
        self.silence_ms = 0.0
        self.over_agent = False
        self.text: str | None = None
        self.words: WordVerdict | None = None
        self.sentence_end_p: float | None = None
        self.probability: float | None = None
        self._model_doubted = False  # an answer of the model in this silence was below the threshold
        self._snapshot_asked = False
        self._model_pending = False
        self._model_asked_at: float | None = None
        self._model_runs = 0
        self._model_busy = False
        self._view: tuple[VerdictKind, str] | None = None
        self.ended: TurnVerdict | None = None

    # --- events ---------------------------------------------------------------------------------

    def speech(self) -> None:
        """The caller is speaking (again): a new silence will be judged afresh."""
        self.gap += 1
        self._reset()

    def quiet(self, quiet_ms: float) -> DetectorStep:
        """The VAD still hears the caller, but their sound has been quiet `quiet_ms` (0: it sounds; see
        `SpeechSegmenter.quiet_ms`). Call once per frame of confirmed speech."""
        if quiet_ms <= 0.0:
            if self._snapshot_asked:
                self.speech()  # the sound came back: the words asked for are stale
            return DetectorStep()
        if self._snapshot_asked or self.ended is not None or quiet_ms < SNAPSHOT_AFTER_QUIET_MS:
            return DetectorStep()
        self._snapshot_asked = True
        return DetectorStep([Snapshot(self.gap)])

    def silence(self, silence_ms: float, *, over_agent: bool = False) -> DetectorStep:
        """The caller has been quiet `silence_ms` after confirmed speech (call once per frame).

        `over_agent`: the speech overlapped the agent; its words decide later whether it takes the turn
        (a backchannel, a barge-in), so they do not make the detector wait here."""
        self.silence_ms = silence_ms
        self.over_agent = over_agent
        if self.ended is not None:
            return DetectorStep()
        requests: list[Request] = []
        if not self._snapshot_asked and silence_ms >= min(SNAPSHOT_AFTER_MS, self.spec.min_silence_ms):
            self._snapshot_asked = True
            requests.append(Snapshot(self.gap))
        if self._wants_model():
            self._model_pending = True
            self._model_asked_at = silence_ms
            self._model_runs += 1
            requests.append(AskModel(self.gap))
        return DetectorStep(requests, self._decide())

    def words_ready(self, gap: int, text: str, sentence_end_p: float | None = None) -> DetectorStep:
        """The STT's words so far for silence `gap` (`sentence_end_p`: see `Transcript`)."""
        if gap != self.gap or self.ended is not None:
            return DetectorStep()
        self.text = text
        self.words = judge(text, self.language)
        self.sentence_end_p = sentence_end_p
        return DetectorStep([], self._decide())

    def model_ready(self, gap: int, probability: float | None) -> DetectorStep:
        """The audio model's P(finished) for silence `gap` (None: the model failed)."""
        if gap != self.gap:
            return DetectorStep()
        self._model_pending = False
        if self.ended is not None:
            return DetectorStep()
        if probability is None:
            self.uses_model = False  # it failed: silence and words decide from here on
        else:
            self.probability = probability
            self._model_doubted = self._model_doubted or probability < self.spec.threshold
        return DetectorStep([], self._decide())

    def model_busy(self, gap: int) -> DetectorStep:
        """The model was asked (`AskModel`) but cannot answer before this silence's limit: it is not run,
        and it is not asked again in this silence (see the module docstring)."""
        if gap != self.gap:
            return DetectorStep()
        self._model_pending = False
        self._model_busy = True
        if self.ended is not None:
            return DetectorStep()
        return DetectorStep([], self._decide())

    def time_left_ms(self) -> float:
        """Silence left before this silence's limit ends the turn whatever is pending."""
        return max(0.0, self._limit_ms() - self.silence_ms)

    def force_end(self, reason: str) -> TurnVerdict:
        """The turn ends now whatever the detector thinks (a key was pressed)."""
        self.ended = self._verdict("finished", reason)
        return self.ended

    # --- rules ----------------------------------------------------------------------------------

    @property
    def _with_model(self) -> bool:
        """The model decides this silence (installed, working, and not too busy before it answered)."""
        return self.uses_model and not (self._model_busy and self.probability is None)

    def _wants_model(self) -> bool:
        if (not self._with_model or self._model_busy or self._model_pending
                or self.silence_ms < self.spec.min_silence_ms):
            return False
        if self.silence_ms >= self._limit_ms():
            return False  # the turn ends on this frame anyway
        if self._waiting_words() or self._unsure_end():
            return False  # the words already said "wait" (or doubt): the model cannot overrule them
        if self._model_asked_at is None:
            return True
        below = self.probability is not None and self.probability < self.spec.threshold
        return below and self.silence_ms - self._model_asked_at >= REASK_MS

    def _limit_ms(self) -> float:
        if self.spec.detector == "silence":
            return float(self.spec.end_of_turn_silence_ms)
        if self.words is not None and self._waiting_words():
            return float(self.spec.hold_silence_ms if self.words.rule in HOLD_RULES else self.spec.max_silence_ms)
        if not self._with_model:  # no audio model (missing, failed or busy): the fixed silence decides
            return float(self.spec.end_of_turn_silence_ms)
        if self.words is not None:  # the words are in and have no objection: only the model doubts
            return float(min(self.spec.doubt_silence_ms, self.spec.max_silence_ms))
        return float(self.spec.max_silence_ms)

    def _decide(self) -> TurnVerdict | None:
        """The verdict that ends the turn now, or a changed 'wait' view (returned once), or None."""
        if self.ended is not None:
            return None
        limit = self._limit_ms()
        if self.silence_ms >= limit:
            if self.spec.detector == "silence" or not self._with_model:
                kind: VerdictKind = "silence"
                reason = f"{limit:.0f} ms of silence"
                if self.uses_model and self.spec.detector != "silence":
                    reason += " (the audio model was too busy to answer in time)"
            else:
                kind = "timeout"
                waited = self._view[1] if self._view else "no decision yet"
                if self.words is not None and not self._waiting_words():
                    waited += "; the words have no objection"
                reason = f"{limit:.0f} ms of silence ({waited})"
            self.ended = self._verdict(kind, reason)
            return self.ended
        if self.spec.detector == "silence" or self.words is None or self.silence_ms < self.spec.min_silence_ms:
            return None
        words = self.words if not self.over_agent else judge("", None)
        if not self._with_model and not words.unfinished:
            return None  # no model: the silence limit decides
        if self._unsure_end():
            kind, reason = "unfinished", (f"the recogniser is unsure the sentence ended "
                                          f"(p={self.sentence_end_p:.2f} for its final mark)")
        else:
            kind, reason = judge_turn(self.probability, words, self.spec.threshold)
            if kind == "finished" and self._late_change_of_mind():
                kind, reason = "unfinished", (f"the audio model first heard an unfinished turn and now a finished "
                                              f"one (p={self.probability:.2f}), and the words carry no final mark")
        if kind == "finished":
            self.ended = self._verdict(kind, reason)
            return self.ended
        if self.probability is None and not words.unfinished and not self._unsure_end():
            return None  # the model has not answered yet
        if self._view == (kind, reason):
            return None
        self._view = (kind, reason)
        return self._verdict(kind, reason)

    def _late_change_of_mind(self) -> bool:
        """The model doubted earlier in this silence, and the words give it no final mark to agree with."""
        return (self._model_doubted and self.punctuated and not self.over_agent and self.words is not None
                and not has_final_mark(self.text))

    def _unsure_end(self) -> bool:
        """The words have no objection, but the recogniser doubts they end the sentence."""
        return (self.words is not None and not self.words.unfinished and not self.over_agent
                and self.sentence_end_p is not None and self.sentence_end_p < UNSURE_END_P)

    def _waiting_words(self) -> bool:
        return self.words is not None and self.words.unfinished and not self.over_agent

    def _verdict(self, kind: VerdictKind, reason: str) -> TurnVerdict:
        rule = self.words.rule if self._waiting_words() and self.words is not None else ""
        return TurnVerdict(kind, reason, round(self.silence_ms, 1), self.probability, rule, self._model_runs,
                           self._model_busy)
