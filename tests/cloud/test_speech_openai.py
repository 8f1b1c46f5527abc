"""`openai` STT (`/v1/audio/transcriptions`) and TTS (`/v1/audio/speech`) through the real SDK against the stand-in."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from parley.agents.spec import STTSpec, TTSSpec
from parley.media.wav import read_wav
from parley.providers.base import ProviderError
from parley.providers.factory import build_stt, build_tts

from .conftest import rms
from .standins.server import Reply


async def test_utterance_is_sent_as_one_wav_and_the_text_comes_back(cloud_settings, openai_server, speech_wav) -> None:
    pcm, rate = read_wav(speech_wav("Please book an appointment for Monday", rate=16000))
    openai_server.default_transcript = "Please book an appointment for Monday."
    stt = build_stt(STTSpec(provider="openai", language="en-US", phrases=["Parley Dental", "Ava"]), cloud_settings)
    assert stt.sample_rate == 16000
    stream = stt.stream()
    for start in range(0, len(pcm), 320):  # 20 ms frames, as a call delivers them
        await stream.push(pcm[start:start + 320])
    result = await stream.end_utterance()
    assert result.is_final and result.text == "Please book an appointment for Monday."
    assert result.start == 0.0 and result.end == pytest.approx(len(pcm) / rate, abs=0.01)
    sent = openai_server.requests_of("transcribe")[0]
    assert sent["rate"] == 16000 and sent["seconds"] == pytest.approx(len(pcm) / rate, abs=0.01)
    assert sent["model"] == "whisper-1" and sent["language"] == "en" and sent["prompt"] == "Parley Dental, Ava"

    # the next utterance starts where the last one ended and is sent on its own
    openai_server.default_transcript = "Thank you."
    await stream.push(pcm[:8000])
    second = await stream.end_utterance()
    assert second.text == "Thank you." and second.start == pytest.approx(result.end, abs=0.01)
    assert openai_server.requests_of("transcribe")[1]["seconds"] == pytest.approx(0.5, abs=0.01)
    assert [t async for t in stream.interim()] == []  # batch engine: no interim results
    await stream.close()


async def test_snapshot_is_sent_early_and_reused_when_only_silence_follows(cloud_settings, openai_server,
                                                                           speech_wav) -> None:
    pcm, _ = read_wav(speech_wav("Please book an appointment for Monday", rate=16000))
    quiet = np.zeros(1600, np.int16)
    stream = build_stt(STTSpec(provider="openai"), cloud_settings).stream()
    openai_server.default_transcript = "Please book an appointment"
    await stream.push(np.concatenate([pcm, quiet]))
    early = await stream.snapshot()
    assert early.text == "Please book an appointment" and not early.is_final
    assert await stream.snapshot() == early  # nothing new: no second request
    await stream.push(np.zeros(8000, np.int16))
    assert (await stream.end_utterance()).text == "Please book an appointment"
    assert len(openai_server.requests_of("transcribe")) == 1  # the silence did not cost a request

    await stream.push(np.concatenate([pcm, quiet]))
    await stream.snapshot()
    openai_server.default_transcript = "Please book an appointment for Monday"
    await stream.push(pcm)  # the caller went on: the early text is incomplete
    assert (await stream.end_utterance()).text == "Please book an appointment for Monday"
    assert len(openai_server.requests_of("transcribe")) == 3


async def test_no_audio_makes_no_request(cloud_settings, openai_server) -> None:
    stream = build_stt(STTSpec(provider="openai"), cloud_settings).stream()
    await stream.push(np.zeros(160, np.int16))
    assert (await stream.end_utterance()).text == ""
    assert openai_server.requests_of("transcribe") == []


async def test_transcription_errors_become_provider_errors(cloud_settings, openai_server) -> None:
    stt = build_stt(STTSpec(provider="openai", retries=1), cloud_settings)
    openai_server.plan("transcribe", Reply(status=500), Reply(text="after a retry"))
    assert (await stt.transcribe(np.ones(8000, np.int16), 16000)).text == "after a retry"
    openai_server.plan("transcribe", Reply(status=503), Reply(status=503))
    with pytest.raises(ProviderError, match="transcription failed: HTTP 503"):
        await stt.transcribe(np.ones(8000, np.int16), 16000)
    wrong = cloud_settings.model_copy(update={"openai_api_key": type(cloud_settings.openai_api_key)("sk-bad")})
    with pytest.raises(ProviderError, match="API key was rejected"):
        await build_stt(STTSpec(provider="openai"), wrong).transcribe(np.ones(8000, np.int16), 16000)


async def test_speech_streams_24khz_pcm_that_sounds(cloud_settings, openai_server) -> None:
    openai_server.plan("speech", Reply(chunk_delay_s=0.03))
    tts = build_tts(TTSSpec(provider="openai", voice="nova", speed=1.1), cloud_settings)
    assert tts.sample_rate == 24000
    started = time.monotonic()
    chunks, first_at = [], None
    async for pcm in tts.synthesize("Hello, you have reached Parley Dental. How can I help you today?"):
        first_at = first_at or time.monotonic() - started
        assert pcm.dtype == np.int16
        chunks.append(pcm)
    total = time.monotonic() - started
    audio = np.concatenate(chunks)
    # the server paces 100 ms chunks 30 ms apart: audio handed on as it streams in spans most of that time
    assert len(chunks) > 5 and total - first_at > 0.5 * 0.03 * (len(chunks) - 1), "audio is handed on as it streams in"
    assert 2.0 < len(audio) / 24000 < 10.0 and rms(audio) > 500
    body = openai_server.requests_of("speech")[0]["body"]
    assert body == {"model": "gpt-4o-mini-tts", "voice": "nova", "input": body["input"],
                    "response_format": "pcm", "speed": 1.1}


async def test_speech_errors_and_cancel(cloud_settings, openai_server) -> None:
    tts = build_tts(TTSSpec(provider="openai", retries=0), cloud_settings)
    openai_server.plan("speech", Reply(status=429))
    with pytest.raises(ProviderError, match="rate limited"):
        async for _ in tts.synthesize("Hello."):
            pass
    openai_server.plan("speech", Reply(chunk_delay_s=0.1))
    got = asyncio.Event()

    async def play() -> None:
        async for _ in tts.synthesize("This is a long sentence that the caller will interrupt halfway."):
            got.set()

    task = asyncio.create_task(play())
    await asyncio.wait_for(got.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(openai_server.wait_hangup, "speech", 3) is not None
