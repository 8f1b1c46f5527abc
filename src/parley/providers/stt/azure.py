"""Azure Speech recognition through the official `azure-cognitiveservices-speech` SDK.

One continuous recogniser per call, fed through a `PushAudioInputStream` (16-bit mono at 16 kHz, or
8 kHz on phone calls). Interim (`recognizing`) and final (`recognized`) results arrive on SDK threads
and are handed to the event loop with `call_soon_threadsafe`. Language and phrase hints
(`PhraseListGrammar`) come from the agent YAML.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.logging import get_logger
from parley.media.resample import resample
from parley.providers.base import STT, Capabilities, Pcm, ProviderError, STTStream, Transcript
from parley.providers.options import ProviderOptions
from parley.providers.tts.azure import speech_credentials

try:
    import azure.cognitiveservices.speech as speechsdk
except ImportError as exc:  # pragma: no cover
    raise ImportError("the azure providers need the 'cloud' extra: pip install 'parley[cloud]'") from exc

if TYPE_CHECKING:
    from parley.settings import Settings

log = get_logger(__name__)

TICKS_PER_SECOND = 10_000_000  # SDK offsets and durations are in 100 ns ticks
SDK_RATES = (8000, 16000)


# --- mapping SDK values to our results --------------------------------------------------------

def confidence_from_json(detailed_json: str | None) -> float | None:
    """The top hypothesis' confidence from a detailed-format result JSON (`NBest[0].Confidence`)."""
    if not detailed_json:
        return None
    try:
        best = json.loads(detailed_json).get("NBest") or []
        value = best[0].get("Confidence") if best else None
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def to_transcript(text: str, *, offset_ticks: int, duration_ticks: int, is_final: bool,
                  language: str | None, detailed_json: str | None = None) -> Transcript:
    """Our `Transcript` from the values an SDK recognition result carries."""
    start = offset_ticks / TICKS_PER_SECOND
    return Transcript(text=text.strip(), is_final=is_final, start=start,
                      end=start + duration_ticks / TICKS_PER_SECOND,
                      confidence=confidence_from_json(detailed_json) if is_final else None, language=language)


def transcript_from_result(result: Any, language: str | None) -> Transcript | None:
    """Map a `SpeechRecognitionResult`: speech -> Transcript, no-match -> empty final, else None."""
    reason = result.reason
    if reason == speechsdk.ResultReason.RecognizingSpeech:
        return to_transcript(result.text or "", offset_ticks=result.offset, duration_ticks=result.duration,
                             is_final=False, language=language)
    if reason == speechsdk.ResultReason.RecognizedSpeech:
        detailed = result.properties.get(speechsdk.PropertyId.SpeechServiceResponse_JsonResult)
        return to_transcript(result.text or "", offset_ticks=result.offset, duration_ticks=result.duration,
                             is_final=True, language=language, detailed_json=detailed)
    if reason == speechsdk.ResultReason.NoMatch:
        return Transcript("", True, result.offset / TICKS_PER_SECOND, result.offset / TICKS_PER_SECOND,
                          language=language)
    return None


def error_from_cancellation(reason: Any, code: Any, details: str, provider: str = "azure") -> ProviderError | None:
    """A cancellation as a `ProviderError` in words (None for a normal end of stream)."""
    if reason != speechsdk.CancellationReason.Error:
        return None
    codes = speechsdk.CancellationErrorCode
    words = {
        codes.AuthenticationFailure: "the Azure Speech key was rejected; check AZURE_SPEECH_KEY and AZURE_SPEECH_REGION",
        codes.ConnectionFailure: "cannot reach Azure Speech",
        codes.ServiceTimeout: "Azure Speech timed out",
        codes.TooManyRequests: "rate limited by Azure Speech",
        codes.BadRequest: "Azure Speech rejected the request (language or settings)",
        codes.Forbidden: "access to Azure Speech denied",
    }.get(code, "Azure Speech failed")
    fatal = code in (codes.AuthenticationFailure, codes.BadRequest, codes.Forbidden)
    return ProviderError(provider, f"{words}: {details}" if details else words, retryable=not fatal,
                         component="stt")


# --- provider ---------------------------------------------------------------------------------

class AzureSTT(STT):
    """Continuous Azure recognition with interim and final results, at 8 or 16 kHz."""

    capabilities = Capabilities(streaming=True, interim_results=True, sample_rates=SDK_RATES)

    def __init__(self, *, key: str, region: str = "", endpoint: str = "", language: str = "en-US",
                 phrases: list[str] | None = None, sample_rate: int = 16000, name: str = "azure",
                 segmentation_silence_ms: int = 500, final_timeout_s: float = 3.0, settle_s: float = 0.6) -> None:
        if sample_rate not in SDK_RATES:
            raise ProviderError(name, f"sample_rate must be 8000 or 16000, not {sample_rate}", retryable=False,
                                component="stt")
        self.name = name
        self.sample_rate = sample_rate
        self.language = language
        self.phrases = list(phrases or [])
        self.segmentation_silence_ms = segmentation_silence_ms
        self.final_timeout_s = final_timeout_s
        self.settle_s = settle_s
        self._key = key
        self._region = region
        self._endpoint = endpoint

    def speech_config(self, language: str) -> Any:
        """The SDK configuration for one recogniser."""
        if self._endpoint:
            config = speechsdk.SpeechConfig(subscription=self._key, endpoint=self._endpoint)
        else:
            config = speechsdk.SpeechConfig(subscription=self._key, region=self._region)
        config.speech_recognition_language = language
        config.output_format = speechsdk.OutputFormat.Detailed
        config.set_property(speechsdk.PropertyId.Speech_SegmentationSilenceTimeoutMs,
                            str(self.segmentation_silence_ms))
        return config

    def stream(self, *, language: str | None = None) -> AzureSTTStream:
        """A continuous recognition stream for one call."""
        return AzureSTTStream(self, language or self.language)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Recognise a whole utterance: push it, end the audio stream, collect every final result."""
        pcm = np.asarray(pcm, dtype=np.int16)
        if sample_rate != self.sample_rate:
            pcm = resample(pcm, sample_rate, self.sample_rate)
        stream = self.stream(language=language)
        try:
            await stream.push(pcm)
            return await stream.finish()
        finally:
            await stream.close()


class AzureSTTStream(STTStream):
    """One SDK recogniser fed by a push stream; results cross from SDK threads to the loop."""

    def __init__(self, stt: AzureSTT, language: str) -> None:
        self._stt = stt
        self._language = language
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recognizer: Any = None
        self._push: Any = None
        self._connection: Any = None
        self._finals: list[Transcript] = []
        self._hypothesis: Transcript | None = None
        self._speech_pending = False  # Azure detected speech it has not finalised yet
        self._connected_at: float | None = None  # loop time the SDK's connection came up (None: not up)
        self._error: ProviderError | None = None
        self._stopped = False
        self._changed = asyncio.Event()
        self._interims: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._closed = False
        self._pushed = 0  # samples written to the SDK, including nudge silence
        self._nudges: list[tuple[float, float]] = []  # (stream seconds, seconds of silence we inserted)

    # SDK threads -> loop
    def _post(self, func: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(func, *args)

    def _open(self) -> None:
        fmt = speechsdk.audio.AudioStreamFormat(samples_per_second=self._stt.sample_rate, bits_per_sample=16,
                                                channels=1)
        self._push = speechsdk.audio.PushAudioInputStream(stream_format=fmt)
        recognizer = speechsdk.SpeechRecognizer(speech_config=self._stt.speech_config(self._language),
                                                audio_config=speechsdk.audio.AudioConfig(stream=self._push))
        if self._stt.phrases:
            grammar = speechsdk.PhraseListGrammar.from_recognizer(recognizer)
            for phrase in self._stt.phrases:
                grammar.addPhrase(phrase)
        language = self._language
        recognizer.recognizing.connect(lambda evt: self._post(self._on_result, transcript_from_result(evt.result, language)))
        recognizer.recognized.connect(lambda evt: self._post(self._on_result, transcript_from_result(evt.result, language)))
        recognizer.speech_start_detected.connect(lambda evt: self._post(self._on_speech_start))
        recognizer.canceled.connect(self._sdk_canceled)
        recognizer.session_stopped.connect(lambda evt: self._post(self._on_stopped))
        self._connection = connection = speechsdk.Connection.from_recognizer(recognizer)  # kept: its events die with it
        connection.connected.connect(lambda evt: self._post(self._on_connection, True))
        connection.disconnected.connect(lambda evt: self._post(self._on_connection, False))
        recognizer.start_continuous_recognition_async().get()
        self._recognizer = recognizer

    def _sdk_canceled(self, evt: Any) -> None:
        details = evt.cancellation_details
        error = error_from_cancellation(details.reason, details.code, details.error_details or "", self._stt.name)
        self._post(self._on_canceled, error)

    # loop side
    def _caller_time(self, t: float) -> float:
        """Stream time without the silence `end_utterance` inserted (the caller never said it)."""
        shift = 0.0
        for at, seconds in self._nudges:
            if t >= at + seconds:
                shift += seconds
            elif t > at:
                shift += t - at
        return t - shift

    def _on_result(self, transcript: Transcript | None) -> None:
        if transcript is None:
            return
        if self._nudges:
            transcript = replace(transcript, start=self._caller_time(transcript.start),
                                 end=self._caller_time(transcript.end))
        if transcript.is_final:
            self._hypothesis, self._speech_pending = None, False
            if transcript.text:
                self._finals.append(transcript)
        else:
            self._hypothesis = transcript
            self._interims.put_nowait(transcript)
        self._changed.set()

    def _on_speech_start(self) -> None:
        self._speech_pending = True
        self._changed.set()

    def _on_connection(self, up: bool) -> None:
        assert self._loop is not None
        self._connected_at = self._loop.time() if up else None
        self._changed.set()

    def _on_canceled(self, error: ProviderError | None) -> None:
        if error is not None:
            log.warning("azure recognition canceled", error=str(error))
            self._error = error
        self._stopped = True
        self._changed.set()
        self._interims.put_nowait(None)

    def _on_stopped(self) -> None:
        self._stopped = True
        self._changed.set()
        self._interims.put_nowait(None)

    async def _ensure_open(self) -> None:
        if self._recognizer is None:
            self._loop = asyncio.get_running_loop()
            try:
                await asyncio.to_thread(self._open)
            except RuntimeError as exc:  # the SDK raises RuntimeError for bad configuration
                raise self._stt.error(f"cannot start recognition: {exc}", retryable=False) from exc

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def push(self, pcm: Pcm) -> None:
        """Feed caller audio at the provider's `sample_rate`."""
        self._raise_error()
        await self._ensure_open()
        self._write(np.asarray(pcm, dtype=np.int16))

    def _write(self, pcm: np.ndarray) -> None:
        self._push.write(pcm.astype("<i2", copy=False).tobytes())
        self._pushed += len(pcm)

    def _nudge(self) -> None:
        """Write a little silence so Azure's segmentation closes the phrase now (and the SDK, if its
        connection dropped, reconnects and resends the audio) instead of waiting for more caller audio."""
        seconds = (self._stt.segmentation_silence_ms + 200) / 1000
        self._nudges.append((self._pushed / self._stt.sample_rate, seconds))
        self._write(np.zeros(int(seconds * self._stt.sample_rate), dtype=np.int16))

    async def _wait_change(self, timeout: float) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), max(timeout, 0.0))
        except TimeoutError:
            pass

    def _take(self, include_hypothesis: bool) -> Transcript:
        parts = list(self._finals)
        if include_hypothesis and self._hypothesis is not None:
            parts.append(Transcript(self._hypothesis.text, True, self._hypothesis.start, self._hypothesis.end,
                                    language=self._language))
        self._finals, self._hypothesis, self._speech_pending = [], None, False
        if not parts:
            return Transcript("", True, language=self._language)
        confidences = [p.confidence for p in parts if p.confidence is not None]
        return Transcript(" ".join(p.text for p in parts), True, parts[0].start, parts[-1].end,
                          min(confidences) if confidences else None, self._language)

    async def end_utterance(self) -> Transcript:
        """Wait for Azure to finalise what it heard (up to `final_timeout_s`), then return it.

        An utterance Azure shows no sign of (no speech detected, no hypothesis) is taken as empty once
        Azure has been connected for `settle_s` of the wait: while the SDK is still connecting (or
        reconnecting) its buffered audio has not been heard yet, so silence from Azure means nothing."""
        if self._recognizer is None:
            return Transcript("", True, language=self._language)
        loop = asyncio.get_running_loop()
        started = loop.time()
        nudged = False
        while True:
            self._raise_error()
            now = loop.time()
            waited = now - started
            heard = self._hypothesis is not None or self._speech_pending
            if not nudged and heard and not self._stopped:
                nudged = True
                self._nudge()
            listening_since = None if self._connected_at is None else max(started, self._connected_at)
            settled = listening_since is not None and now - listening_since >= self._stt.settle_s
            if not heard and (self._finals or settled or self._stopped):
                return self._take(False)
            if waited >= self._stt.final_timeout_s or self._stopped:
                return self._take(True)
            limit = self._stt.final_timeout_s - waited
            if not heard and listening_since is not None:
                limit = min(limit, listening_since + self._stt.settle_s - now)
            await self._wait_change(limit)

    async def snapshot(self) -> Transcript:
        """What Azure has recognised of this utterance so far (its finished phrases and the latest
        hypothesis), not final; no waiting."""
        parts = [*self._finals, *([self._hypothesis] if self._hypothesis is not None else [])]
        if not parts:
            return Transcript("", False, language=self._language)
        return Transcript(" ".join(p.text for p in parts if p.text), False, parts[0].start, parts[-1].end,
                          language=self._language)

    async def finish(self) -> Transcript:
        """End the audio (no more pushes) and return everything recognised."""
        if self._recognizer is None:
            return Transcript("", True, language=self._language)
        self._push.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stt.final_timeout_s + self._pushed / self._stt.sample_rate
        while not self._stopped and loop.time() < deadline:
            await self._wait_change(deadline - loop.time())
        self._raise_error()
        return self._take(True)

    async def interim(self) -> AsyncIterator[Transcript]:
        """Interim hypotheses as Azure sends them; ends when the stream stops."""
        while True:
            item = await self._interims.get()
            if item is None:
                return
            yield item

    async def close(self) -> None:
        """Stop recognition and release the SDK objects."""
        if self._closed:
            return
        self._closed = True
        recognizer, self._recognizer = self._recognizer, None
        self._interims.put_nowait(None)
        if recognizer is None:
            return

        def stop() -> None:
            try:
                self._push.close()
            except RuntimeError:
                pass
            recognizer.stop_continuous_recognition_async().get()

        try:
            await asyncio.wait_for(asyncio.to_thread(stop), 5.0)
        except (TimeoutError, RuntimeError) as exc:
            log.warning("azure recognizer did not stop cleanly", error=str(exc))
        self._connection = None


def create(spec: ProviderOptions, *, settings: Settings, sample_rate: int | None = None) -> AzureSTT:
    """`stt: {provider: azure, language: de-DE}`. Options: `phrases` (hints), `sample_rate` (8000 or
    16000), `region`/`endpoint`, `api_key_env`, `segmentation_silence_ms`, `final_timeout_s`."""
    options = spec.options
    key, _ = speech_credentials("azure", options, settings, "stt")
    region = options.get("region") or settings.azure_speech_region
    endpoint = options.get("endpoint", "")
    return AzureSTT(
        key=key, region=region, endpoint=endpoint, language=spec.language or "en-US",
        phrases=list(options.get("phrases") or []), sample_rate=int(sample_rate or options.get("sample_rate", 16000)),
        segmentation_silence_ms=int(options.get("segmentation_silence_ms", 500)),
        final_timeout_s=float(options.get("final_timeout_s", 3.0)),
    )
