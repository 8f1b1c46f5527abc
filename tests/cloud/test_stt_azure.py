"""Azure Speech STT through the official SDK: mapping of SDK values to our results, a real SDK session
that cannot connect (error in words, offline), and a `live` test against Azure when a key is set."""

from __future__ import annotations

import asyncio
import json
import os
import time

import azure.cognitiveservices.speech as speechsdk
import numpy as np
import pytest

from parley.agents.spec import STTSpec
from parley.media.wav import read_wav
from parley.providers.base import ProviderError
from parley.providers.factory import build_stt
from parley.providers.stt.azure import AzureSTT, confidence_from_json, error_from_cancellation, to_transcript

from ..conftest import free_port


def test_ticks_become_seconds_and_detailed_json_gives_confidence() -> None:
    detailed = json.dumps({"RecognitionStatus": "Success", "Offset": 15_000_000, "Duration": 12_300_000,
                           "DisplayText": "Guten Tag.",
                           "NBest": [{"Confidence": 0.93, "Lexical": "guten tag", "Display": "Guten Tag."}]})
    final = to_transcript(" Guten Tag. ", offset_ticks=15_000_000, duration_ticks=12_300_000, is_final=True,
                          language="de-DE", detailed_json=detailed)
    assert (final.text, final.is_final, final.start, final.end, final.confidence, final.language) == (
        "Guten Tag.", True, 1.5, pytest.approx(2.73), 0.93, "de-DE")
    interim = to_transcript("guten", offset_ticks=15_000_000, duration_ticks=3_000_000, is_final=False,
                            language="de-DE", detailed_json=detailed)
    assert interim.is_final is False and interim.confidence is None and interim.end == pytest.approx(1.8)
    assert confidence_from_json("not json") is None and confidence_from_json('{"NBest": []}') is None


def test_cancellations_map_to_errors_in_words() -> None:
    codes = speechsdk.CancellationErrorCode
    auth = error_from_cancellation(speechsdk.CancellationReason.Error, codes.AuthenticationFailure, "401 Unauthorized")
    assert auth is not None and "AZURE_SPEECH_KEY" in str(auth) and auth.retryable is False
    net = error_from_cancellation(speechsdk.CancellationReason.Error, codes.ConnectionFailure, "")
    assert net is not None and str(net) == "azure: cannot reach Azure Speech" and net.retryable
    assert error_from_cancellation(speechsdk.CancellationReason.EndOfStream, codes.NoError, "") is None


async def test_real_sdk_session_that_cannot_connect_fails_in_words(settings) -> None:
    port = free_port(kind=1)  # a TCP port nobody listens on
    spec = STTSpec(provider="azure", language="de-DE", phrases=["Parley", "Katja"],
                   endpoint=f"ws://127.0.0.1:{port}/speech/recognition/conversation/cognitiveservices/v1")
    stt = build_stt(spec, settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("k")}))
    assert isinstance(stt, AzureSTT) and stt.language == "de-DE" and stt.sample_rate == 16000
    stream = stt.stream()
    started = time.monotonic()
    with pytest.raises(ProviderError, match="cannot reach Azure Speech"):
        for _ in range(150):  # up to 3 s of 20 ms frames
            await stream.push(np.zeros(320, np.int16))
            await asyncio.sleep(0.02)
        await stream.end_utterance()
    assert time.monotonic() - started < 10
    await stream.close()


def test_phone_rate_and_bad_rates(settings) -> None:
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("k"),
                                        "azure_speech_region": "westeurope"})
    assert build_stt(STTSpec(provider="azure", language="de-DE", sample_rate=8000), keyed).sample_rate == 8000
    with pytest.raises(ProviderError, match="8000 or 16000"):
        build_stt(STTSpec(provider="azure", sample_rate=44100), keyed)


@pytest.mark.live
async def test_live_azure_recognises_speech(settings, speech_wav) -> None:
    key, region = os.environ.get("AZURE_SPEECH_KEY"), os.environ.get("AZURE_SPEECH_REGION")
    if not key or not region:
        pytest.skip("AZURE_SPEECH_KEY / AZURE_SPEECH_REGION are not set: live Azure Speech test skipped")
    pcm, rate = read_wav(speech_wav("Please book an appointment for Monday morning", rate=16000))
    live = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)(key),
                                       "azure_speech_region": region})
    stt = build_stt(STTSpec(provider="azure", language="en-US", phrases=["appointment"]), live)
    stream = stt.stream()
    interims = []

    async def watch() -> None:
        async for item in stream.interim():
            interims.append(item)

    watcher = asyncio.create_task(watch())
    silence = np.zeros(rate, np.int16)
    for chunk in np.array_split(np.concatenate([pcm, silence]), (len(pcm) + rate) // 320):
        await stream.push(chunk)
        await asyncio.sleep(0.02)
    result = await stream.end_utterance()
    await stream.close()
    watcher.cancel()
    assert "appointment" in result.text.lower() and "monday" in result.text.lower()
    assert result.is_final and 0 <= result.start < result.end
    assert interims and not interims[0].is_final
