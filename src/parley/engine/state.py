"""The state a `Conversation` keeps per turn: latency marks, caller utterances, agent speech, interruptions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from parley.engine.events import TurnMetrics
from parley.engine.playout import SpeechTrack
from parley.engine.reply import ReplyStream
from parley.engine.turn.detector import TurnVerdict
from parley.providers.base import ToolCall
from parley.support.taskset import TaskSet


@dataclass
class TurnMarks:
    """Latency marks of one turn (wall clock from `t0`, the end-of-turn decision)."""

    turn: int
    speech_end: float | None
    end_of_turn: float | None
    t0: float = field(default_factory=time.perf_counter)
    stt_final: float | None = None
    llm_first: float | None = None
    tts_first: float | None = None
    frame_out: float | None = None
    voice_to_voice_ms: float | None = None
    emitted: bool = False
    verdict: TurnVerdict | None = None  # what ended the caller's turn (None: a key, or no detector)
    restarts: int = 0  # preemptive replies restarted because the final transcript differed
    prefetched: bool = False  # the LLM was asked on the words before the turn was decided
    tts_prepared: bool = False  # the first piece's audio was synthesized before it was said

    def ms(self, at: float | None) -> float | None:
        return None if at is None else round((at - self.t0) * 1000.0, 2)

    def event(self) -> TurnMetrics:
        return TurnMetrics(
            turn=self.turn,
            speech_end=self.speech_end,
            end_of_turn=self.end_of_turn,
            stt_final_ms=self.ms(self.stt_final),
            llm_first_token_ms=self.ms(self.llm_first),
            tts_first_audio_ms=self.ms(self.tts_first),
            first_frame_out_ms=self.ms(self.frame_out),
            voice_to_voice_ms=self.voice_to_voice_ms,
            silence_waited_ms=(
                None if self.speech_end is None or self.end_of_turn is None
                else round((self.end_of_turn - self.speech_end) * 1000.0, 1)
            ),
            detector=self.verdict.kind if self.verdict is not None else "key" if self.speech_end is None else "",
            probability=None if self.verdict is None or self.verdict.probability is None
            else round(self.verdict.probability, 3),
            words_rule=self.verdict.words if self.verdict is not None else "",
            preemptive_restarts=self.restarts,
            llm_prefetched=self.prefetched,
            tts_prefetched=self.tts_prepared,
            model_busy=self.verdict is not None and self.verdict.model_busy,
        )


@dataclass
class Utterance:
    """A finished caller utterance (or DTMF key) and its recognition."""

    start: float
    end: float
    marks: TurnMarks
    future: asyncio.Future[str]
    kind: Literal["pending", "turn", "dropped"] = "pending"
    consumed: bool = False
    failed: bool = False
    preview: str = ""  # the words the detector decided on (a reply may start on them before the final)


@dataclass
class AgentSpeech:
    """One agent utterance being produced and played."""

    kind: str
    interruptible: bool
    sample_rate: int
    marks: TurnMarks | None = None
    task: asyncio.Task[None] | None = None
    children: TaskSet = field(default_factory=lambda: TaskSet("agent speech"))  # its LLM reader
    track: SpeechTrack = field(init=False)
    said_before: list[str] = field(default_factory=list)  # text of earlier rounds / before a resume
    unsaved: list[str] = field(default_factory=list)  # the part of said_before not yet in the history
    reply: ReplyStream | None = None  # the LLM answer being spoken, if any
    calls: list[ToolCall] = field(default_factory=list)
    cancelled: bool = False
    started: bool = False
    first_out: float | None = None  # media time of the first frame written
    gate: asyncio.Task[bool] | None = None  # preemptive start: True once the final words match the preview
    lead_trimmed: int = 0  # output samples of leading silence dropped before the first sound

    def __post_init__(self) -> None:
        self.track = SpeechTrack(self.sample_rate)


class WordsChanged(Exception):
    """The final transcript differs from the words a preemptive reply was started on: start again."""


@dataclass
class Interrupted:
    """An agent utterance the caller cut off, until we know whether the caller really took the turn."""

    speech: AgentSpeech
    t: float
    heard: str
    heard_sentences: list[str]
    unheard: list[str]
