"""What a `Conversation` reports. It stores nothing itself: every event goes to the sink it was given.

Each event is a small dataclass with a `type` string and `to_dict()` (JSON-ready). Times named `start`,
`end`, `t` are media seconds from the start of the call (the channel's clock); fields ending in `_ms`
are durations in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from parley.support.taskset import TaskSet


@dataclass
class Event:
    """Base of all conversation events."""

    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass
class ConversationStarted(Event):
    """The conversation began listening on its channel."""

    type: ClassVar[str] = "conversation_started"
    agent: str
    direction: str
    sample_rate: int
    first_speaker: str


@dataclass
class TranscriptEntry(Event):
    """One finished utterance of the caller (`user`) or the agent (`agent`).

    For the agent, `text` is what the caller actually heard; `interrupted` is True when the caller cut it off."""

    type: ClassVar[str] = "transcript"
    role: Literal["user", "agent"]
    text: str
    start: float
    end: float
    interrupted: bool = False
    turn: int = 0


@dataclass
class TurnMetrics(Event):
    """Latency marks of one agent turn.

    `speech_end`/`end_of_turn` are media seconds (the caller's last voiced audio; the VAD's end-of-turn
    decision). The `*_ms` marks are wall-clock milliseconds after the end-of-turn decision; None when the
    step did not happen (e.g. no LLM for a canned line). `voice_to_voice_ms` is what the caller waits from
    the end of their speech to the first reply frame: the end-of-turn silence plus `first_frame_out_ms`."""

    type: ClassVar[str] = "turn_metrics"
    turn: int
    speech_end: float | None = None
    end_of_turn: float | None = None
    stt_final_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_frame_out_ms: float | None = None
    voice_to_voice_ms: float | None = None
    silence_waited_ms: float | None = None  # caller's last voiced audio → end-of-turn decision (media ms)
    detector: str = ""  # how the turn ended: finished | timeout | silence | key (see TurnDecision)
    probability: float | None = None  # the audio model's last P(finished)
    words_rule: str = ""  # the word rule that made the detector wait, if any
    preemptive_restarts: int = 0  # replies started on early words and restarted on the final transcript
    llm_prefetched: bool = False  # the answer was asked for on the words, before the turn was decided
    tts_prefetched: bool = False  # its first words' audio was synthesized before the turn was decided
    model_busy: bool = False  # the audio model was too busy to answer in time (many calls' decisions queued)


@dataclass
class TurnDecision(Event):
    """The end-of-turn detector's view after a silence (`kind`: finished, unfinished, hold, timeout,
    silence): `reason` in words, the silence so far, the audio model's P(finished), the word rule, the
    words so far and the recogniser's P for their final full stop / question mark (`sentence_end_p`)."""

    type: ClassVar[str] = "turn_decision"
    kind: str
    reason: str
    silence_ms: float
    t: float
    probability: float | None = None
    words_rule: str = ""
    text: str = ""
    sentence_end_p: float | None = None


@dataclass
class Interruption(Event):
    """The caller spoke over the agent.

    `kind`: `barge_in` (agent stopped), `resumed` (false interruption or backchannel: the agent went on),
    `ignored` (the caller's sound held no words or only a backchannel; the agent was not stopped)."""

    type: ClassVar[str] = "interruption"
    kind: Literal["barge_in", "resumed", "ignored"]
    t: float
    heard_text: str = ""
    caller_text: str = ""


@dataclass
class DtmfReceived(Event):
    """The caller pressed a key."""

    type: ClassVar[str] = "dtmf"
    digit: str
    t: float


@dataclass
class ToolInvoked(Event):
    """The agent used a tool (built-in or HTTP)."""

    type: ClassVar[str] = "tool_call"
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    result: str = ""
    ok: bool = True
    t: float = 0.0


@dataclass
class ProviderFailed(Event):
    """An STT/LLM/TTS provider failed during a turn; the agent apologised."""

    type: ClassVar[str] = "provider_error"
    component: str
    message: str
    failures: int
    t: float = 0.0


@dataclass
class ConversationEnded(Event):
    """The conversation is over; `reason` is the end reason (see docs/engine.md)."""

    type: ClassVar[str] = "conversation_ended"
    reason: str
    duration_s: float
    turns: int


EventSink = Callable[[Event], Any] | asyncio.Queue[Event]  # a non-blocking callable, or a queue (put_nowait)


def emitter(sink: EventSink | None) -> Callable[[Event], None]:
    """A function that hands events to `sink` without blocking (a coroutine result runs as a task, kept
    until it finishes; a failure is logged)."""
    if sink is None:
        return lambda _event: None
    if isinstance(sink, asyncio.Queue):
        return sink.put_nowait

    tasks = TaskSet("event sink")

    def emit(event: Event) -> None:
        result = sink(event)
        if asyncio.iscoroutine(result):
            tasks.spawn(result, name=f"event-{event.type}")

    return emit
