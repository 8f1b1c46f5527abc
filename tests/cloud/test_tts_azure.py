"""Azure Speech TTS over its REST protocol, against the Azure TTS stand-in."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from parley.agents.spec import TTSSpec
from parley.providers.base import ProviderError
from parley.providers.factory import build_tts
from parley.providers.tts.azure import create

from .conftest import rms
from .standins.server import Reply


def katja(server, **extra):  # type: ignore[no-untyped-def]
    return TTSSpec(provider="azure", language="de-DE", voice="de-DE-KatjaNeural", endpoint=server.base_url, **extra)


async def speak(tts, text: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate([pcm async for pcm in tts.synthesize(text)])


async def test_phone_rate_voice_and_language_from_yaml(cloud_settings, azure_tts_server) -> None:
    tts = build_tts(katja(azure_tts_server, sample_rate=8000), cloud_settings)
    assert tts.sample_rate == 8000
    audio = await speak(tts, "Guten Tag, Sie sprechen mit Parley. Wie kann ich helfen?")
    assert 1.5 < len(audio) / 8000 < 10 and rms(audio) > 500
    sent = azure_tts_server.requests_of("azure_tts")[0]
    assert sent["voice"] == "de-DE-KatjaNeural" and sent["lang"] == "de-DE" and sent["rate"] == 8000
    assert sent["text"] == "Guten Tag, Sie sprechen mit Parley. Wie kann ich helfen?"


async def test_first_audio_is_streamed_before_synthesis_ends(cloud_settings, azure_tts_server) -> None:
    azure_tts_server.plan("azure_tts", Reply(chunk_delay_s=0.02))
    tts = create(katja(azure_tts_server), settings=cloud_settings, sample_rate=16000)
    started, first_at, chunks = time.monotonic(), None, 0
    async for _pcm in tts.synthesize("This sentence is long enough to arrive in several pieces."):
        first_at = first_at or time.monotonic() - started
        chunks += 1
    # chunks are sent 20 ms apart: the first one was handed on long before the last arrived
    assert chunks > 5 and (time.monotonic() - started) - first_at > 0.5 * 0.02 * (chunks - 1)
    assert azure_tts_server.requests_of("azure_tts")[0]["rate"] == 16000


async def test_text_is_escaped_and_speed_becomes_prosody(cloud_settings, azure_tts_server) -> None:
    tts = build_tts(katja(azure_tts_server, speed=1.25), cloud_settings)
    await speak(tts, 'Tom & Jerry <3 "quotes"')
    sent = azure_tts_server.requests_of("azure_tts")[0]
    assert sent["text"] == 'Tom & Jerry <3 "quotes"' and sent["prosody_rate"] == "+25%"
    # without a language, the voice name's locale is the document's language
    plain = build_tts(TTSSpec(provider="azure", voice="en-GB-SoniaNeural", endpoint=azure_tts_server.base_url),
                      cloud_settings)
    await speak(plain, "Good morning.")
    assert azure_tts_server.requests_of("azure_tts")[1]["lang"] == "en-GB"


async def test_wrong_key_and_unsupported_rate_are_explained(cloud_settings, azure_tts_server) -> None:
    wrong = cloud_settings.model_copy(update={"azure_speech_key": type(cloud_settings.azure_speech_key)("nope")})
    with pytest.raises(ProviderError, match="AZURE_SPEECH_KEY") as info:
        await speak(build_tts(katja(azure_tts_server), wrong), "Hallo.")
    assert info.value.retryable is False
    with pytest.raises(ProviderError, match="sample rate 11025 not offered"):
        build_tts(katja(azure_tts_server, sample_rate=11025), cloud_settings)


def test_missing_configuration_names_the_variables(settings, monkeypatch) -> None:
    monkeypatch.delenv("AZURE_SPEECH_KEY", raising=False)
    monkeypatch.delenv("AZURE_SPEECH_REGION", raising=False)
    with pytest.raises(ProviderError, match="AZURE_SPEECH_KEY and AZURE_SPEECH_REGION"):
        build_tts(TTSSpec(provider="azure", voice="de-DE-KatjaNeural"), settings)


async def test_server_error_retried_slow_first_audio_then_dropped_stream(cloud_settings, azure_tts_server) -> None:
    tts = build_tts(katja(azure_tts_server, retries=1, first_audio_timeout_s=2.0), cloud_settings)
    azure_tts_server.plan("azure_tts", Reply(status=500), Reply())
    assert rms(await speak(tts, "Erster Versuch scheitert.")) > 500
    azure_tts_server.plan("azure_tts", Reply(first_delay_s=10), Reply())
    started = time.monotonic()
    assert rms(await speak(tts, "Zu langsam, dann schnell.")) > 500
    assert time.monotonic() - started < 8
    azure_tts_server.plan("azure_tts", Reply(drop_after=3))
    with pytest.raises(ProviderError, match="audio stream broke"):
        await speak(tts, "Dieser Satz bricht in der Mitte ab, weil die Verbindung fällt.")


async def test_cancel_closes_the_connection(cloud_settings, azure_tts_server) -> None:
    azure_tts_server.plan("azure_tts", Reply(chunk_delay_s=0.1))
    tts = build_tts(katja(azure_tts_server), cloud_settings)
    got = asyncio.Event()

    async def play() -> None:
        async for _ in tts.synthesize("Ein langer Satz, den der Anrufer unterbricht, bevor er zu Ende ist."):
            got.set()

    task = asyncio.create_task(play())
    await asyncio.wait_for(got.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    hangup = await asyncio.to_thread(azure_tts_server.wait_hangup, "azure_tts", 3)
    assert hangup is not None and "azure_tts" not in azure_tts_server.completed


async def test_one_voice_serves_a_phone_call_at_8khz(cloud_settings, azure_tts_server) -> None:
    shared = build_tts(TTSSpec.model_validate({"provider": "azure", "voice": "de-DE-KatjaNeural",
                                               "endpoint": azure_tts_server.base_url,
                                               "fallbacks": [{"provider": "espeak", "voice": "de"}]}), cloud_settings)
    assert shared.sample_rate == 24000
    phone = shared.for_rate(8000)
    assert phone.sample_rate == 8000 and shared.sample_rate == 24000
    audio = await speak(phone, "Hallo, hier ist Parley.")
    assert azure_tts_server.requests_of("azure_tts")[0]["rate"] == 8000 and rms(audio) > 500
    azure_tts_server.plan("azure_tts", Reply(status=500), Reply(status=500))
    fallback_audio = await speak(phone, "Hallo, hier ist Parley.")  # espeak at 22.05 kHz, resampled to 8 kHz
    assert 0.8 < len(fallback_audio) / len(audio) < 1.6 and phone.events[-1].next == "espeak"
