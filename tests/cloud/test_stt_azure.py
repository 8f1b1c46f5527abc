"""Azure Speech STT through the official SDK: against the recognition stand-in (interim and final results,
phrase hints, phone rate, bad key), mapping of SDK values to our results, a session that cannot connect,
and a `live` test against Azure when a key is set."""

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
from parley.providers.base import ProviderError, Transcript
from parley.providers.factory import build_stt
from parley.providers.stt.azure import AzureSTT, confidence_from_json, error_from_cancellation, to_transcript

from ..conftest import free_port
from ..eventually import eventually


def _german(tmp_path, text: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """German speech at 16 kHz from espeak-ng."""
    from ..conftest import synth_espeak

    pcm, _ = read_wav(synth_espeak(text, tmp_path / f"de-{abs(hash(text))}.wav", rate=16000, voice="de"))
    return pcm


async def _feed(stream, pcm: np.ndarray, frame: int) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(pcm), frame):
        await stream.push(pcm[start:start + frame])
        await asyncio.sleep(0)


async def test_interim_and_final_results_arrive_through_the_sdk(settings, azure_stt_server, tmp_path) -> None:
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("speech-test")})
    spec = STTSpec(provider="azure", language="de-DE", phrases=["Parley", "Katja"], endpoint=azure_stt_server.endpoint)
    stt = build_stt(spec, keyed)
    speech = _german(tmp_path, "Guten Tag, ich möchte einen Termin vereinbaren")
    silence = np.zeros(16000, np.int16)
    azure_stt_server.phrases.extend(["Guten Tag, ich möchte einen Termin vereinbaren.", "Danke."])
    stream = stt.stream()
    interims = []

    async def watch() -> None:
        async for item in stream.interim():
            interims.append(item)

    watcher = asyncio.create_task(watch())
    await _feed(stream, np.concatenate([silence[:4000], speech, silence]), 320)
    async def heard_so_far() -> Transcript | None:  # what Azure has so far, without ending the utterance
        so_far = await stream.snapshot()
        return so_far if so_far.text.lower().startswith("guten tag") else None

    so_far = await eventually(heard_so_far, what="Azure's words so far")
    assert not so_far.is_final
    first = await stream.end_utterance()
    assert first.text == "Guten Tag, ich möchte einen Termin vereinbaren." and first.is_final
    assert first.confidence == pytest.approx(0.91) and first.language == "de-DE"
    speech_s = len(speech) / 16000
    assert 0.1 <= first.start <= 0.4, "offsets count from the start of the stream (0.25 s of silence first)"
    assert 0.25 + speech_s - 0.8 < first.end <= 0.25 + speech_s + 0.1
    assert len(interims) >= 3 and not any(t.is_final for t in interims)
    assert interims[0].text == "guten" and interims[-1].text.startswith("guten tag, ich möchte")
    assert [t.end for t in interims] == sorted(t.end for t in interims), "hypotheses grow while the caller speaks"

    await _feed(stream, np.concatenate([speech[:8000], silence]), 320)
    second = await stream.end_utterance()
    assert second.text == "Danke." and second.start > first.end
    await stream.close()
    await asyncio.wait_for(watcher, 5)  # interim() ends when the stream stops
    session = azure_stt_server.sessions[0]
    assert session["language"] == "de-DE" and session["phrases_hint"] == ["Parley", "Katja"]
    assert session["rate"] == 16000


async def test_phone_rate_and_whole_utterance_transcription(settings, azure_stt_server, tmp_path) -> None:
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("speech-test")})
    stt = build_stt(STTSpec(provider="azure", language="de-DE", sample_rate=8000,
                            endpoint=azure_stt_server.endpoint), keyed)
    assert stt.sample_rate == 8000
    azure_stt_server.phrases.append("Ich rufe wegen meiner Rechnung an.")
    speech16 = _german(tmp_path, "Ich rufe wegen meiner Rechnung an")
    result = await stt.transcribe(speech16, 16000)  # resampled to the provider's 8 kHz
    assert result.text == "Ich rufe wegen meiner Rechnung an." and result.is_final
    assert azure_stt_server.sessions[0]["rate"] == 8000


async def test_utterance_ending_without_silence_is_finalised_at_once(settings, azure_stt_server, tmp_path) -> None:
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("speech-test")})
    stream = build_stt(STTSpec(provider="azure", language="de-DE", endpoint=azure_stt_server.endpoint), keyed).stream()
    azure_stt_server.phrases.extend(["Eins.", "Zwei."])
    speech = _german(tmp_path, "Guten Tag, ich möchte einen Termin")
    await _feed(stream, speech, 320)  # the audio stops right after the words
    started = time.monotonic()
    first = await stream.end_utterance()
    assert first.text == "Eins." and time.monotonic() - started < 2.5
    await _feed(stream, np.concatenate([np.zeros(16000, np.int16), speech, np.zeros(16000, np.int16)]), 320)
    second = await stream.end_utterance()
    await stream.close()
    # times are the caller's: the silence written to close the first phrase is not counted
    assert second.text == "Zwei." and abs(second.start - (len(speech) / 16000 + 1.0)) < 0.35


async def test_words_said_while_the_connection_comes_up_are_not_lost(settings, azure_stt_server, tmp_path) -> None:
    """The turn ends before the SDK's connection is up (a slow network): the audio it buffered is
    still recognised, instead of the utterance being taken as empty after the settle time."""
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("speech-test")})
    stream = build_stt(STTSpec(provider="azure", language="de-DE", endpoint=azure_stt_server.endpoint), keyed).stream()
    azure_stt_server.phrases.append("Guten Tag.")
    azure_stt_server.handshake_delay_s = 1.2  # twice the settle time
    speech = _german(tmp_path, "Guten Tag")
    await _feed(stream, speech, 320)
    started = time.monotonic()
    result = await stream.end_utterance()
    waited = time.monotonic() - started
    await stream.close()
    assert result.text == "Guten Tag."
    assert waited < 3.0, "finalised by the nudge once connected, not by the final timeout"


async def test_silence_is_an_empty_utterance_soon_after_the_connection_is_up(settings, azure_stt_server) -> None:
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("speech-test")})
    stream = build_stt(STTSpec(provider="azure", language="de-DE", endpoint=azure_stt_server.endpoint), keyed).stream()
    azure_stt_server.handshake_delay_s = 0.5
    await _feed(stream, np.zeros(8000, np.int16), 320)
    started = time.monotonic()
    result = await stream.end_utterance()
    waited = time.monotonic() - started
    await stream.close()
    assert result.text == "" and waited < 2.0, "no words: not held for the whole final timeout (3 s)"


async def test_connection_dropped_mid_utterance_loses_no_words(settings, azure_stt_server, tmp_path) -> None:
    keyed = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("speech-test")})
    stream = build_stt(STTSpec(provider="azure", language="de-DE", endpoint=azure_stt_server.endpoint), keyed).stream()
    azure_stt_server.phrases.extend(["(lost with the connection)", "Guten Tag, ich möchte einen Termin."])
    azure_stt_server.drop_after_s = 1.0  # the service goes away while the caller is talking
    speech = _german(tmp_path, "Guten Tag, ich möchte einen Termin")
    await _feed(stream, np.concatenate([speech, np.zeros(16000, np.int16)]), 320)
    result = await stream.end_utterance()
    await stream.close()
    # the SDK reconnected and sent the unacknowledged audio again: the whole utterance was recognised
    assert result.text == "Guten Tag, ich möchte einen Termin."
    assert azure_stt_server.sessions[0].get("dropped") and len(azure_stt_server.sessions) == 2
    assert azure_stt_server.sessions[1]["audio_seconds"] >= len(speech) / 16000


async def test_rejected_key_is_a_clear_non_retryable_error(settings, azure_stt_server) -> None:
    wrong = settings.model_copy(update={"azure_speech_key": type(settings.azure_speech_key)("wrong")})
    stream = build_stt(STTSpec(provider="azure", language="de-DE", endpoint=azure_stt_server.endpoint), wrong).stream()
    with pytest.raises(ProviderError) as info:
        for _ in range(150):
            await stream.push(np.zeros(320, np.int16))
            await asyncio.sleep(0.02)
        await stream.end_utterance()
    await stream.close()
    assert "AZURE_SPEECH_KEY" in str(info.value) and info.value.retryable is False


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
