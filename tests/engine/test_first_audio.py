"""First audio sooner: the first clause as its own TTS request, the cache of fixed texts, the
acknowledgement of a slow answer — over the file channel with the fakes of fakes.py, through `Engines`
(one cache per agent, warmed at start, shared by its conversations)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parley.agents.loader import Agent
from parley.agents.prompts import PromptLibrary
from parley.engine.events import Event, TranscriptEntry
from parley.engine.file_channel import FileChannel
from parley.engine.session import Engines
from parley.providers.base import VAD
from parley.settings import Settings
from tests.engine.fakes import CallerAudio, EnergyVAD, ScriptLLM, ToneSTT, ToneTTS, agent_spec

RATE = 8000
WORDS = {300: "when can I come in", 400: "thanks"}

pytestmark = [pytest.mark.realtime, pytest.mark.timeout(60)]


class FakeEngines(Engines):
    """`Engines` over the fakes: the per-call VAD is the energy one."""

    def vad(self, sample_rate: int | None = None) -> VAD:
        return EnergyVAD()


def engines(tts: ToneTTS, llm: ScriptLLM, **spec: Any) -> FakeEngines:
    agent = Agent(agent_spec(**spec), Path("agents/test.yaml"), PromptLibrary({}, Path("prompts.yaml")))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' own keyword
    return FakeEngines(agent=agent, settings=settings, stt=ToneSTT(WORDS), llm=llm, tts=tts)


@dataclass
class Run:
    channel: FileChannel
    events: list[Event]
    history: list[tuple[str, str]]

    def agent(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, TranscriptEntry) and e.role == "agent"]

    def voiced_s(self) -> float:
        """Seconds of agent sound (5 ms blocks with energy)."""
        out = self.channel.output()
        blocks = out[: out.size - out.size % 40].reshape(-1, 40).astype(np.float32)
        return float(np.count_nonzero(np.sqrt((blocks**2).mean(axis=1)) > 300)) * 0.005


async def converse(eng: Engines, audio: CallerAudio, *, variables: dict[str, Any] | None = None) -> Run:
    channel = FileChannel(audio.pcm, audio.rate, speed=4.0, tail_s=0.0)
    events: list[Event] = []
    conversation = eng.conversation(
        channel, variables=variables, on_event=events.append, system_prompt="You are a test agent."
    )
    await conversation.run()
    history = [(m.role, m.content) for m in conversation.history if m.role != "system"]
    return Run(channel, events, history)


async def test_the_cache_serves_the_greeting_without_running_the_tts() -> None:
    tts = ToneTTS()
    eng = engines(tts, ScriptLLM(), first_speaker="agent", greeting="Thanks for calling Parley.")
    report = await eng.warm()
    assert "Thanks for calling Parley." in report.synthesized
    warmed = len(tts.started)

    for _call in range(2):  # every conversation of the agent shares the one cache
        run = await converse(eng, CallerAudio(4))
        assert run.agent() == ["Thanks for calling Parley."]
        heard = tts.samples_for("Thanks for calling Parley.") / 16000
        assert run.voiced_s() == pytest.approx(heard, abs=0.03)
    assert len(tts.started) == warmed, "the greeting was synthesized again instead of served from the cache"
    assert eng.cache.stats.hits >= 2


async def test_a_greeting_with_variables_is_never_served_from_a_stale_entry() -> None:
    tts = ToneTTS()
    eng = engines(
        tts, ScriptLLM(), first_speaker="agent", greeting="Nice to hear from you {{ caller }}.",
        variables={"caller": "there"},
    )
    await eng.warm()
    assert "Nice to hear from you there." in tts.started  # the agent's own default is cached

    run = await converse(eng, CallerAudio(4), variables={"caller": "Bob"})
    assert run.agent() == ["Nice to hear from you Bob."]
    assert tts.started[-1] == "Nice to hear from you Bob.", "a call's own greeting is synthesized"
    heard = tts.samples_for("Nice to hear from you Bob.") / 16000
    assert run.voiced_s() == pytest.approx(heard, abs=0.03)

    before = len(tts.started)
    run = await converse(eng, CallerAudio(4))
    assert run.agent() == ["Nice to hear from you there."]
    assert len(tts.started) == before


async def test_a_long_first_sentence_starts_with_its_first_clause() -> None:
    reply = "Sure thing Bob, I can book you in on Tuesday morning. See you then."
    tts = ToneTTS()
    run = await converse(engines(tts, ScriptLLM([reply])), CallerAudio(5).say(300, 0.3, 1.0))
    assert tts.started == ["Sure thing Bob,", "I can book you in on Tuesday morning.", "See you then."]
    assert run.agent() == [reply], "the transcript reads as one reply"
    assert run.history == [("user", "when can I come in"), ("assistant", reply)]


async def test_a_reply_opening_with_a_short_phrase_starts_with_that_phrase_alone() -> None:
    reply = "Sure, I can book that. See you then."
    tts = ToneTTS()
    run = await converse(engines(tts, ScriptLLM([reply])), CallerAudio(5).say(300, 0.3, 1.0))
    assert tts.started == ["Sure,", "I can book that.", "See you then."]
    assert run.agent() == [reply], "the transcript reads as one reply"


async def test_a_common_opening_phrase_is_synthesized_once_then_served_from_the_cache() -> None:
    tts = ToneTTS()
    eng = engines(tts, ScriptLLM(["Sure, I can book that.", "Sure, I can book that."]))
    report = await eng.warm()
    assert "Sure," not in report.synthesized, "not at start: no start-up cost, no burst to a cloud TTS"
    warmed = len(tts.started)

    for _call in range(2):  # an LLM writing its own replies: its opening phrases are kept once said
        run = await converse(eng, CallerAudio(5).say(300, 0.3, 1.0))
        assert run.agent() == ["Sure, I can book that."]
    assert tts.started[warmed:] == ["Sure,", "I can book that.", "I can book that."]
    assert eng.cache.stats.hits >= 1


async def test_a_slow_answer_is_acknowledged_from_the_cache() -> None:
    tts = ToneTTS()
    llm = ScriptLLM(["Tuesday at ten works.", "Tuesday at ten works."], word_delay_s=0.25)
    eng = engines(tts, llm, acknowledgement={"enabled": True, "after_ms": 150, "phrases": ["Let me check."]})
    await eng.warm()
    assert "Let me check." in tts.started
    warmed = len(tts.started)

    run = await converse(eng, CallerAudio(7).say(300, 0.3, 1.0))
    # heard first and in the transcript; the LLM's history has only its own answer
    assert run.agent() == ["Let me check. Tuesday at ten works."]
    assert run.history == [("user", "when can I come in"), ("assistant", "Tuesday at ten works.")]
    assert tts.started[warmed:] == ["Tuesday at ten works."], "the phrase came from the cache"


async def test_a_prompt_answer_is_not_acknowledged() -> None:
    tts = ToneTTS()
    ack = {"enabled": True, "after_ms": 400}
    eng = engines(tts, ScriptLLM(["Tuesday at ten works."]), acknowledgement=ack)
    await eng.warm()
    run = await converse(eng, CallerAudio(5).say(300, 0.3, 1.0))
    assert run.agent() == ["Tuesday at ten works."]
    off = engines(ToneTTS(), ScriptLLM(["Tuesday at ten works."], word_delay_s=0.25))  # off by default
    run = await converse(off, CallerAudio(7).say(300, 0.3, 1.0))
    assert run.agent() == ["Tuesday at ten works."]


def test_the_tts_leading_silence_is_not_played_before_the_first_word() -> None:
    def first_sound_s(lead_s: float) -> float:
        tts = ToneTTS(lead_silence_s=lead_s)
        eng = engines(tts, ScriptLLM(), first_speaker="agent", greeting="Hello there.")
        run = asyncio.run(converse(eng, CallerAudio(2)))
        out = run.channel.output()
        return int(np.flatnonzero(np.abs(out) > 300)[0]) / RATE

    clean = first_sound_s(0.0)
    assert first_sound_s(0.06) == pytest.approx(clean, abs=0.01)  # piper's ~60 ms onset: dropped
    assert first_sound_s(0.3) == pytest.approx(clean + 0.18, abs=0.02)  # only 120 ms is ever dropped
