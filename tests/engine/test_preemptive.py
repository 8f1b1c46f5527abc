"""Preemptive replies: the reply starts on the words the turn detector decided on, before the final
transcript; it is heard only once the final transcript confirms those words, and it is started again
when the final words differ — never an answer to words the caller did not say."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
import pytest

from parley.engine.conversation import Conversation
from parley.engine.events import Event, TranscriptEntry, TurnDecision, TurnMetrics
from parley.engine.file_channel import FileChannel
from parley.providers.base import VAD, Message
from tests.engine.fakes import CallerAudio, EnergyVAD, LaggingVAD, ScriptLLM, ToneSTT, ToneTTS, agent_spec

pytestmark = [pytest.mark.realtime, pytest.mark.timeout(60)]
RATE = 8000
WORDS = {300: "what are your opening hours", 400: "cancel my booking"}
ANSWERS = {"what are your opening hours": "We open at nine.", "cancel my booking": "Your booking is cancelled."}


class SureModel:
    """An end-of-turn model that always hears a finished turn."""

    def predict(self, pcm16k: np.ndarray) -> float:
        return 0.95


def answer(messages: list[Message]) -> str:
    return ANSWERS.get(messages[-1].content, "Sorry?")


async def talk(stt: ToneSTT, llm: ScriptLLM, vad: VAD | None = None) -> tuple[Conversation, list[Event]]:
    audio = CallerAudio(5).say(300, 0.5, 1.0)
    channel = FileChannel(audio.pcm, audio.rate, speed=4.0, tail_s=1.0)
    events: list[Event] = []
    conv = Conversation(agent_spec(turn={"detector": "smart_turn"}, idle={"reminder_after_s": 60}), channel, stt=stt, llm=llm,
                        tts=ToneTTS(), vad=vad or EnergyVAD(), on_event=events.append, turn_model=SureModel())
    await conv.run()
    return conv, events


def of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_the_reply_starts_on_the_detectors_words_before_the_final_transcript() -> None:
    stt = ToneSTT(WORDS, delay_s=0.5)  # the final transcript takes half a second
    llm = ScriptLLM(respond=answer)
    conv, events = await talk(stt, llm)
    (marks,) = of(events, TurnMetrics)
    assert marks.detector == "finished" and marks.preemptive_restarts == 0
    assert marks.llm_first_token_ms is not None and marks.stt_final_ms is not None
    assert marks.llm_first_token_ms < marks.stt_final_ms  # the LLM was asked before the final words came
    assert marks.first_frame_out_ms >= marks.stt_final_ms  # but nothing was heard before they confirmed it
    assert [e.text for e in of(events, TranscriptEntry) if e.role == "agent"] == ["We open at nine."]
    assert len(llm.requests) == 1


async def test_a_reply_to_words_the_caller_did_not_say_is_never_heard() -> None:
    stt = ToneSTT(WORDS, delay_s=0.5)
    stt.early_words = {"what are your opening hours": "cancel my booking"}  # the early words were wrong
    llm = ScriptLLM(respond=answer)
    conv, events = await talk(stt, llm)
    (marks,) = of(events, TurnMetrics)
    assert marks.preemptive_restarts == 1
    assert [m.content for m in llm.requests[0] if m.role == "user"] == ["cancel my booking"]
    assert [m.content for m in llm.requests[1] if m.role == "user"] == ["what are your opening hours"]
    agent = [e.text for e in of(events, TranscriptEntry) if e.role == "agent"]
    assert agent == ["We open at nine."]  # the answer to the unsaid words was never spoken
    assert [(m.role, m.content) for m in conv.history if m.role != "system"] == [
        ("user", "what are your opening hours"), ("assistant", "We open at nine.")]


# --- caller cues with the smart_turn detector ------------------------------------------------------


async def converse_cues(audio: CallerAudio, llm: ScriptLLM, *, model: float = 0.95,
                        dtmf: tuple[tuple[float, str], ...] = ()) -> tuple[Conversation, FileChannel, list[Event]]:
    class Model:
        def predict(self, pcm16k: np.ndarray) -> float:
            return model

    channel = FileChannel(audio.pcm, audio.rate, speed=4.0, tail_s=1.0, dtmf=dtmf)
    events: list[Event] = []
    conv = Conversation(agent_spec(turn={"detector": "smart_turn"}, idle={"reminder_after_s": 60}), channel,
                        stt=ToneSTT(WORDS, delay_s=0.1), llm=llm, tts=ToneTTS(), vad=EnergyVAD(),
                        on_event=events.append, turn_model=Model())
    await conv.run()
    return conv, channel, events


def voiced(channel: FileChannel, start: float, end: float) -> float:
    out = channel.output()[int(start * RATE): int(end * RATE)]
    blocks = out[: out.size - out.size % 40].reshape(-1, 40).astype(np.float32)
    return float(np.count_nonzero(np.sqrt((blocks ** 2).mean(axis=1)) > 300)) * 0.005


async def test_a_caller_who_resumes_after_the_decision_cancels_the_reply_in_flight() -> None:
    # the detector ends the turn ~0.2 s into the pause; the LLM is slow, so nothing is heard yet when the
    # caller goes on: that reply is dropped, and one reply answers everything
    audio = CallerAudio(6).say(300, 0.2, 0.8).say(400, 1.6, 0.7)
    llm = ScriptLLM(respond=lambda m: "Alright." if m[-1].role == "user" else None, word_delay_s=0.3)
    conv, channel, events = await converse_cues(audio, llm)
    assert voiced(channel, 0, 2.3) == 0, "nothing half-spoken while the caller was still talking"
    assert [e.text for e in of(events, TranscriptEntry) if e.role == "agent"] == ["Alright."]
    assert [(m.role, m.content) for m in conv.history if m.role != "system"] == [
        ("user", "what are your opening hours cancel my booking"), ("assistant", "Alright.")]


async def test_a_key_pressed_in_the_pause_ends_the_turn_at_once() -> None:
    # the audio model hears an unfinished turn (it would wait 1.5 s); a key 0.1 s into the pause ends it
    audio = CallerAudio(5).say(300, 0.5, 1.0)
    llm = ScriptLLM(respond=lambda m: "Got it." if m[-1].role == "user" else None)
    conv, channel, events = await converse_cues(audio, llm, model=0.1, dtmf=((1.6, "1"),))
    user = [m.content for m in conv.history if m.role == "user"]
    assert user == ["what are your opening hours DTMF: 1"] or user == ["what are your opening hours", "DTMF: 1"]
    (first, *_) = of(events, TurnMetrics)
    assert first.silence_waited_ms is not None and first.silence_waited_ms < 300


# --- the answer asked for while the detector still waits (turn.prefetch_answer) --------------------


async def converse_doubting(audio: CallerAudio, llm: ScriptLLM, events: list[Any], *,
                            snapshot_delay_s: float = 0.0, tts: ToneTTS | None = None, tail_s: float = 1.0,
                            **turn: Any) -> tuple[Conversation, FileChannel]:
    """The audio model doubts every turn (P 0.1): with no objection from the words the detector waits
    `doubt_silence_ms` (800) — the time a prefetched answer has to arrive in."""
    class Doubting:
        def predict(self, pcm16k: np.ndarray) -> float:
            return 0.1

    channel = FileChannel(audio.pcm, audio.rate, speed=4.0, tail_s=tail_s)
    conv = Conversation(agent_spec(turn={"detector": "smart_turn", **turn}, idle={"reminder_after_s": 60}),
                        channel, stt=ToneSTT(WORDS, delay_s=0.1, snapshot_delay_s=snapshot_delay_s), llm=llm,
                        tts=tts or ToneTTS(), vad=EnergyVAD(), on_event=events.append, turn_model=Doubting())
    await conv.run()
    return conv, channel


def asked_then_decided(events: list[Any]) -> tuple[int, int]:
    asked = events.index("llm asked")
    decided = next(i for i, e in enumerate(events) if isinstance(e, TurnDecision) and e.kind in ("finished", "timeout"))
    return asked, decided


async def test_the_llm_is_asked_on_the_words_while_the_detector_still_waits() -> None:
    events: list[Any] = []
    llm = ScriptLLM(respond=lambda m: (events.append("llm asked"), answer(m))[1], first_token_delay_s=0.1)
    conv, _ = await converse_doubting(CallerAudio(5).say(300, 0.5, 1.0), llm, events)
    asked, decided = asked_then_decided(events)
    assert asked < decided, "the answer was asked for only after the turn was decided"
    (marks,) = of(events, TurnMetrics)
    assert marks.llm_prefetched and marks.detector == "timeout"
    assert len(llm.requests) == 1  # the prefetched answer was the one spoken; nothing asked twice
    assert [e.text for e in of(events, TranscriptEntry) if e.role == "agent"] == ["We open at nine."]


async def test_the_words_are_asked_for_when_the_sound_stops_not_when_the_vad_lets_go() -> None:
    # the VAD hears "speech" for 160 ms after the caller's sound stops (as Silero can); the words are
    # asked for ~80 ms into the quiet, not at the VAD's silence (~195 ms)
    stt = ToneSTT(WORDS)
    _, events = await talk(stt, ScriptLLM(respond=answer), vad=LaggingVAD(decay_windows=8))
    assert stt.snapshot_quiet_ms and stt.snapshot_quiet_ms[0] < 120
    assert [e.text for e in of(events, TranscriptEntry)] == ["what are your opening hours", "We open at nine."]


async def test_the_llm_is_asked_on_the_words_that_arrive_after_the_models_doubt() -> None:
    # the words come last (a slow decode): the model has already said "unfinished", and the answer is
    # still asked for at once rather than at the decision
    events: list[Any] = []
    llm = ScriptLLM(respond=lambda m: (events.append("llm asked"), answer(m))[1], first_token_delay_s=0.1)
    await converse_doubting(CallerAudio(5).say(300, 0.5, 1.0), llm, events, snapshot_delay_s=0.06)
    views = [e for e in events if isinstance(e, TurnDecision)]
    assert views[0].kind == "unfinished" and views[0].probability is not None  # the model spoke first
    asked, decided = asked_then_decided(events)
    assert asked < decided, "the answer was asked for only after the turn was decided"
    (marks,) = of(events, TurnMetrics)
    assert marks.llm_prefetched and len(llm.requests) == 1


async def test_a_caller_who_goes_on_drops_the_prefetched_answer() -> None:
    # a 0.5 s pause (the detector waits 0.8 s), then more words: the answer asked for on the first words
    # is cancelled and never heard; the reply answers the words the turn ended on
    events: list[Any] = []
    llm = ScriptLLM(respond=lambda m: "Alright, let me see." if m[-1].role == "user" else None,
                    first_token_delay_s=0.05, word_delay_s=0.15)
    conv, channel = await converse_doubting(CallerAudio(6).say(300, 0.2, 0.8).say(400, 1.5, 1.2), llm, events)
    # (the tone recogniser hears the longer tone: the words become "cancel my booking")
    assert [m[-1].content for m in llm.requests] == ["what are your opening hours", "cancel my booking"]
    assert llm.cancelled == 1 and llm.completed == 1
    assert [e.text for e in of(events, TranscriptEntry) if e.role == "agent"] == ["Alright, let me see."]
    assert [(m.role, m.content) for m in conv.history if m.role != "system"] == [
        ("user", "cancel my booking"), ("assistant", "Alright, let me see.")]
    assert voiced(channel, 0, 2.7) == 0, "nothing heard while the caller was still talking"


async def test_without_prefetch_the_llm_is_asked_after_the_decision() -> None:
    events: list[Any] = []
    llm = ScriptLLM(respond=lambda m: (events.append("llm asked"), answer(m))[1])
    tts = NoticedTTS(events)
    await converse_doubting(CallerAudio(5).say(300, 0.5, 1.0), llm, events, prefetch_answer=False, tts=tts)
    asked, decided = asked_then_decided(events)
    assert asked > decided
    assert events.index("tts started") > decided
    (marks,) = of(events, TurnMetrics)
    assert not marks.llm_prefetched and not marks.tts_prefetched


class NoticedTTS(ToneTTS):
    """The tone voice, noting in `events` when it starts a text (100 ms per 100 ms chunk: a slow voice)."""

    def __init__(self, events: list[Any]) -> None:
        super().__init__(chunk_delay_s=0.1)
        self.events = events

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        self.events.append("tts started")
        async for chunk in super().synthesize(text):
            yield chunk


async def test_a_prefetched_answers_first_words_are_synthesized_while_the_detector_waits() -> None:
    # the answer is in long before the doubted turn ends: its audio is made in the wait, and the first
    # frame goes out at the decision instead of one slow TTS chunk (100 ms) after it
    events: list[Any] = []
    llm = ScriptLLM(respond=lambda m: (events.append("llm asked"), answer(m))[1])
    tts = NoticedTTS(events)
    await converse_doubting(CallerAudio(5).say(300, 0.5, 1.0), llm, events, tts=tts)
    _, decided = asked_then_decided(events)
    assert events.index("tts started") < decided, "the answer's audio was made only after the decision"
    (marks,) = of(events, TurnMetrics)
    assert marks.llm_prefetched and marks.tts_prefetched
    assert marks.tts_first_audio_ms is not None and marks.tts_first_audio_ms < 100, marks
    assert tts.started == ["We open at nine."]  # synthesized once, in the wait
    assert [e.text for e in of(events, TranscriptEntry) if e.role == "agent"] == ["We open at nine."]


async def test_a_caller_who_goes_on_stops_the_audio_made_for_the_dropped_answer() -> None:
    # the answer to the first words is being synthesized when the caller goes on: its synthesis stops,
    # it is never heard, and the answer to the words the turn ended on is said
    events: list[Any] = []
    llm = ScriptLLM(respond=lambda m: answer(m) if m[-1].role == "user" else None)
    tts = NoticedTTS(events)
    conv, channel = await converse_doubting(CallerAudio(6).say(300, 0.2, 0.8).say(400, 1.5, 1.2), llm, events,
                                            tts=tts, tail_s=4.0)
    assert [m[-1].content for m in llm.requests] == ["what are your opening hours", "cancel my booking"]
    assert "We open at nine." in tts.cancelled and "We open at nine." not in tts.finished
    assert [e.text for e in of(events, TranscriptEntry) if e.role == "agent"] == ["Your booking is cancelled."]
    assert voiced(channel, 0, 2.7) == 0, "nothing heard while the caller was still talking"
