"""piper and espeak-ng TTS: streamed speech at the declared rate that Whisper can understand."""

from __future__ import annotations

import os

import numpy as np
import pytest

from parley.providers.base import ProviderError
from parley.providers.stt.whisper import WhisperSTT
from parley.providers.tts.espeak import EspeakTTS
from parley.providers.tts.piper import PiperTTS

from .helpers import rms, telephone, words

pytestmark = pytest.mark.slow

TEXT = "Sure, I can book that for Tuesday. May I have your name, please? Thank you."


async def _collect(tts, text: str) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [chunk async for chunk in tts.synthesize(text)]


def _voiced_fraction(pcm: np.ndarray, rate: int) -> float:
    frame = rate // 50
    energies = [rms(pcm[i : i + frame]) for i in range(0, len(pcm) - frame, frame)]
    return float(np.mean(np.array(energies) > 500))


async def test_piper_streams_sentence_by_sentence_and_is_understood(whisper_stt: WhisperSTT) -> None:
    tts = PiperTTS()
    chunks = await _collect(tts, TEXT)
    assert tts.sample_rate == 22050
    assert len(chunks) == 3 and all(c.dtype == np.int16 for c in chunks)
    pcm = np.concatenate(chunks)
    seconds = len(pcm) / tts.sample_rate
    assert 3.0 < seconds < 8.0
    assert _voiced_fraction(pcm, tts.sample_rate) > 0.4
    heard = await whisper_stt.transcribe(telephone(pcm, tts.sample_rate), 16000)
    # piper varies its timing at random; Whisper now and then mishears one word of it
    assert len({"sure", "book", "tuesday", "name", "please", "thank"} & words(heard.text)) >= 4


async def test_piper_speed_changes_duration() -> None:
    text = "Our opening hours are from nine in the morning to five in the afternoon."
    normal = np.concatenate(await _collect(PiperTTS(), text))
    fast = np.concatenate(await _collect(PiperTTS(speed=2.0), text))
    assert len(fast) < 0.75 * len(normal)  # half as long, give or take piper's random phoneme lengths
    assert await _collect(PiperTTS(), "   ") == []


async def test_piper_stops_when_the_listener_stops() -> None:
    tts = PiperTTS()
    stream = tts.synthesize("One. Two. Three. Four. Five.")
    first = await stream.__anext__()
    await stream.aclose()  # barge-in: the engine closes the stream after the first sentence
    assert len(first) > 0


async def test_espeak_streams_speech(whisper_stt: WhisperSTT) -> None:
    tts = EspeakTTS(voice="en-us")
    chunks = await _collect(tts, TEXT)
    assert len(chunks) > 3  # audio arrives in pieces while espeak-ng is still talking
    pcm = np.concatenate(chunks)
    assert tts.sample_rate == 22050 and 3.0 < len(pcm) / 22050 < 8.0
    assert _voiced_fraction(pcm, 22050) > 0.4
    heard = await whisper_stt.transcribe(telephone(pcm, 22050), 16000)
    assert "tuesday" in words(heard.text)


async def test_espeak_other_language_and_missing_program(monkeypatch: pytest.MonkeyPatch) -> None:
    german = np.concatenate(await _collect(EspeakTTS(voice="de", wpm=200), "Guten Tag, wie kann ich helfen?"))
    assert _voiced_fraction(german, 22050) > 0.4
    monkeypatch.setenv("PATH", os.devnull)
    with pytest.raises(ProviderError, match="espeak-ng is not installed"):
        EspeakTTS()
