"""Whisper base (bundled) on telephone-quality speech, silence and noise; never blocks the event loop."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from parley.media.resample import resample
from parley.providers.base import Message
from parley.providers.factory import build_llm
from parley.providers.stt.whisper import WhisperSTT

from .helpers import words

pytestmark = pytest.mark.slow

SENTENCE = "I would like to book an appointment for Tuesday"


async def test_espeak_speech_over_the_phone_reaches_the_right_intent(  # type: ignore[no-untyped-def]
    whisper_stt: WhisperSTT, phone_speech, receptionist, settings
) -> None:
    pcm = resample(phone_speech(SENTENCE, "espeak"), 16000, 8000)
    result = await whisper_stt.transcribe(pcm, 8000)  # 8 kHz in: resampled inside
    assert {"appointment", "tuesday"} <= words(result.text)
    llm = build_llm(receptionist.components.llm, settings, agent=receptionist)
    reply = "".join([c.text async for c in llm.chat([Message("user", result.text)])])
    assert reply == "Sure, I can book that for Tuesday. May I have your name, please?"


async def test_stream_decodes_utterance_by_utterance(whisper_stt: WhisperSTT, phone_speech) -> None:  # type: ignore[no-untyped-def]
    first = phone_speech("What are your opening hours?", "piper")
    stream = whisper_stt.stream()
    assert [t async for t in stream.interim()] == []  # batch engine: no interim results
    for i in range(0, len(first), 320):  # 20 ms frames, as a call delivers them
        await stream.push(first[i : i + 320])
    one = await stream.end_utterance()
    assert {"opening", "hours"} <= words(one.text)
    assert one.start == 0.0 and one.end == pytest.approx(len(first) / 16000)
    hiss = (np.random.default_rng(7).standard_normal(16000) * 600).astype(np.int16)  # line noise, no words
    await stream.push(hiss)
    two = await stream.end_utterance()
    assert two.text == "" and two.start == pytest.approx(one.end)
    await stream.close()


async def test_no_words_invented_on_silence_or_noise(whisper_stt: WhisperSTT) -> None:
    loud = (np.random.default_rng(7).standard_normal(16000) * 9000).astype(np.int16)
    for pcm in (np.zeros(16000 * 2, np.int16), loud, np.zeros(100, np.int16)):
        assert (await whisper_stt.transcribe(pcm, 16000)).text == ""


async def test_piper_speech_over_the_phone_is_understood_off_the_loop(
    whisper_stt: WhisperSTT, phone_speech
) -> None:  # type: ignore[no-untyped-def]
    pcm = phone_speech(SENTENCE, "piper")
    await whisper_stt.warm()
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    started = time.perf_counter()
    result = await whisper_stt.transcribe(pcm, 16000)
    elapsed = time.perf_counter() - started
    done.set()
    await beat
    assert result.is_final and result.language == "en"
    heard = words(result.text)
    assert {"appointment", "tuesday"} <= heard and len({"would", "like", "book"} & heard) >= 2
    # the loop kept ticking while Whisper decoded (a blocked loop shows one gap as long as the decode)
    assert len(gaps) > 5 and max(gaps) < elapsed / 2
    assert elapsed < 30  # generous bound for a loaded 2-core machine (bench/ has the real figures)


async def test_caller_resuming_after_a_pause_is_not_cut(whisper_stt: WhisperSTT, phone_speech) -> None:  # type: ignore[no-untyped-def]
    first = phone_speech("I would like to book", "piper")
    second = phone_speech("an appointment for Tuesday", "piper")
    stream = whisper_stt.stream()
    pause = np.zeros(16000 // 2, np.int16)  # long enough to start an early decode of the first half
    for part in (first, pause, second, pause):
        for i in range(0, len(part), 320):
            await stream.push(part[i : i + 320])
    result = await stream.end_utterance()
    assert {"like", "appointment", "tuesday"} <= words(result.text)
    await stream.close()
