"""Fast, deterministic stand-ins for the speech providers, for the engine's timing tests.

They subclass the provider base classes of `parley.providers.base` (they are not our code paths): the
caller "speaks" in tones, `ToneSTT` names each utterance by its pitch, `ToneTTS` answers every sentence
with a tone whose length follows the text, `ScriptLLM` streams scripted replies. Each records what was
started, finished and cancelled so tests can check that barge-in really stopped the work in flight.
The real offline engines are exercised in test_offline.py.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.agents.spec import AgentSpec
from parley.providers.base import (
    LLM,
    STT,
    TTS,
    VAD,
    Capabilities,
    LLMChunk,
    Message,
    STTStream,
    ToolCall,
    ToolDefinition,
    Transcript,
)

RATE_16K = 16000


def tone(freq: float, seconds: float, rate: int, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class CallerAudio:
    """A caller recording built from tones placed on a timeline (mono int16 at `rate`)."""

    def __init__(self, seconds: float, rate: int = 8000) -> None:
        self.rate = rate
        self.pcm = np.zeros(int(seconds * rate), dtype=np.int16)

    def say(self, freq: float, start: float, seconds: float) -> CallerAudio:
        a = int(start * self.rate)
        chunk = tone(freq, seconds, self.rate)
        self.pcm[a : a + chunk.size] = chunk[: self.pcm.size - a]
        return self


class EnergyVAD(VAD):
    """Speech = a 20 ms window louder than -36 dBFS."""

    name = "energy"
    sample_rate = RATE_16K
    window_samples = 320

    def probability(self, window: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(window.astype(np.float32) ** 2)))
        return 1.0 if rms > 500 else 0.0

    def reset(self) -> None:
        pass


class LaggingVAD(EnergyVAD):
    """`EnergyVAD` whose probability decays over `decay_windows` × 20 ms after the sound stops, as
    Silero's does (0.4: still speech to the segmenter's hysteresis)."""

    def __init__(self, decay_windows: int = 5) -> None:
        self.decay_windows = decay_windows
        self._decay = 0

    def probability(self, window: np.ndarray) -> float:
        if super().probability(window) >= 0.5:
            self._decay = self.decay_windows
            return 1.0
        if self._decay:
            self._decay -= 1
            return 0.4
        return 0.0


class ToneSTT(STT):
    """Recognises an utterance by its dominant pitch: `vocabulary` maps Hz -> words ("" = no words)."""

    name = "tone-stt"
    sample_rate = RATE_16K
    capabilities = Capabilities(sample_rates=(RATE_16K,))

    def __init__(
        self,
        vocabulary: dict[float, str],
        *,
        delay_s: float = 0.0,
        snapshot_delay_s: float = 0.0,
        fail: bool = False,
        fail_push: bool = False,
    ) -> None:
        self.vocabulary = vocabulary
        self.delay_s = delay_s
        self.snapshot_delay_s = snapshot_delay_s
        self.fail = fail
        self.fail_push = fail_push
        self.finals: list[str] = []
        self.snapshots: list[str] = []
        self.snapshot_quiet_ms: list[float] = []  # how long the audio pushed had been quiet, per snapshot
        self.early_words: dict[str, str] = {}  # final text -> what a snapshot says instead

    def stream(self, *, language: str | None = None) -> _ToneStream:
        return _ToneStream(self)

    def recognise(self, pcm: np.ndarray) -> str:
        if pcm.size < 160:
            return ""
        spectrum = np.abs(np.fft.rfft(pcm.astype(np.float32)))
        freq = float(np.argmax(spectrum)) * RATE_16K / pcm.size
        best = min(self.vocabulary, key=lambda f: abs(f - freq), default=None)
        if best is None or abs(best - freq) > 25:
            return ""
        return self.vocabulary[best]

    async def transcribe(
        self, pcm: np.ndarray, sample_rate: int, *, language: str | None = None
    ) -> Transcript:
        return Transcript(self.recognise(pcm), True)


class _ToneStream(STTStream):
    def __init__(self, stt: ToneSTT) -> None:
        self.stt = stt
        self.chunks: list[np.ndarray] = []

    async def push(self, pcm: np.ndarray) -> None:
        if self.stt.fail_push:
            raise self.stt.error("connection to the recogniser lost")
        self.chunks.append(pcm)

    async def end_utterance(self) -> Transcript:
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        self.chunks = []
        if self.stt.delay_s:
            await asyncio.sleep(self.stt.delay_s)
        if self.stt.fail:
            raise self.stt.error("recogniser down")
        text = self.stt.recognise(pcm)
        self.stt.finals.append(text)
        return Transcript(text, True)

    async def snapshot(self) -> Transcript:
        """The words so far, after `stt.snapshot_delay_s` (`stt.early_words` may make them differ from
        the final ones)."""
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
        self.stt.snapshot_quiet_ms.append((pcm.size - (loud[-1] + 1 if loud.size else 0)) * 1000 / RATE_16K)
        if self.stt.snapshot_delay_s:
            await asyncio.sleep(self.stt.snapshot_delay_s)
        text = self.stt.recognise(pcm)
        self.stt.snapshots.append(text)
        return Transcript(self.stt.early_words.get(text, text), False)

    async def close(self) -> None:
        self.chunks = []


class ToneTTS(TTS):
    """Speaks every sentence as a 600 Hz tone of `seconds_per_char` per character, in 100 ms chunks."""

    name = "tone-tts"
    sample_rate = RATE_16K
    capabilities = Capabilities(streaming=True)

    def __init__(
        self, *, seconds_per_char: float = 0.05, chunk_delay_s: float = 0.0, fail: bool = False,
        lead_silence_s: float = 0.0,
    ) -> None:
        self.seconds_per_char = seconds_per_char
        self.lead_silence_s = lead_silence_s  # silence before each sentence's tone (as piper starts)
        self.chunk_delay_s = chunk_delay_s
        self.fail = fail
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    def samples_for(self, text: str) -> int:
        return int(len(text) * self.seconds_per_char * self.sample_rate)

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        if self.fail:
            raise self.error("voice server down")
        self.started.append(text)
        audio = tone(600, self.samples_for(text) / self.sample_rate, self.sample_rate, amplitude=10000)
        if self.lead_silence_s:
            audio = np.concatenate([np.zeros(int(self.lead_silence_s * self.sample_rate), np.int16), audio])
        step = self.sample_rate // 10
        done = False
        try:
            for i in range(0, audio.size, step):
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                yield audio[i : i + step]
            done = True
            self.finished.append(text)
        finally:
            if not done:
                self.cancelled.append(text)


Reply = str | tuple[str, list[ToolCall]]


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call_{uuid.uuid4().hex[:8]}", name=name, arguments=arguments)


@dataclass
class ScriptLLM(LLM):
    """Answers each user turn with the next scripted reply (text, optionally with tool calls).

    `respond` may be given instead: a function of the messages returning a reply. Words are streamed
    with `word_delay_s` between them, the first after `first_token_delay_s`; `failures` makes the next N requests raise `ProviderError`."""

    replies: list[Reply] = field(default_factory=list)
    respond: Callable[[list[Message]], Reply | None] | None = None
    word_delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    failures: int = 0
    name: str = "script-llm"
    requests: list[list[Message]] = field(default_factory=list)
    cancelled: int = 0
    completed: int = 0

    async def chat(
        self, messages: list[Message], tools: list[ToolDefinition] | None = None
    ) -> AsyncGenerator[LLMChunk, None]:
        self.requests.append(
            [Message(m.role, m.content, list(m.tool_calls), m.tool_call_id, m.name) for m in messages]
        )
        if self.failures:
            self.failures -= 1
            raise self.error("model server down")
        reply: Reply | None
        if self.respond is not None:
            reply = self.respond(messages)
        elif messages and messages[-1].role == "user" and self.replies:
            reply = self.replies.pop(0)
        else:
            reply = None
        if reply is None:
            return
        text, calls = (reply, []) if isinstance(reply, str) else reply
        done = False
        try:
            await asyncio.sleep(self.first_token_delay_s)
            for word in re.findall(r"\S+\s*", text):
                yield LLMChunk(text=word)
                await asyncio.sleep(self.word_delay_s)
            for c in calls:
                yield LLMChunk(tool_call=c)
            done = True
            self.completed += 1
        finally:
            if not done:
                self.cancelled += 1


def agent_spec(**overrides: Any) -> AgentSpec:
    """An agent for engine tests (components are named but the tests pass their own providers)."""
    base: dict[str, Any] = {
        "name": "Test agent",
        "first_speaker": "caller",
        "turn": {"end_of_turn_silence_ms": 400, "min_speech_ms": 100},
        "interruption": {"min_speech_ms": 200, "false_interruption_timeout_ms": 1500},
        "idle": {"reminder_after_s": 30, "max_reminders": 1},
        "max_duration_s": 600,
        "tools": [
            {"name": "end_call"},
            {"name": "transfer_call", "target": "sip:desk@127.0.0.1"},
            {"name": "send_dtmf"},
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return AgentSpec.model_validate(base)
