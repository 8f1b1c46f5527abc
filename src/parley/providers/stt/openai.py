"""Speech to text through `POST /v1/audio/transcriptions` (OpenAI Whisper and compatible servers such
as faster-whisper-server, speaches, LocalAI, Groq), one request per utterance.

Audio pushed during an utterance is kept as int16 and sent as one WAV file when the engine says the
caller stopped talking — or earlier, on `snapshot()`, and then reused when only silence followed (see
`parley.providers.stt.batch`). There are no interim results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from parley.media.wav import wav_bytes
from parley.providers.base import STT, Pcm, ProviderError, Transcript
from parley.providers.llm.openai import classify_error, openai_endpoint
from parley.providers.options import ProviderOptions
from parley.providers.streaming import reason
from parley.providers.stt.batch import BatchSTTStream
from parley.support.retry import Backoff, retry_async

try:
    import openai
except ImportError as exc:  # pragma: no cover
    raise ImportError("the openai providers need the 'cloud' extra: pip install 'parley[cloud]'") from exc

if TYPE_CHECKING:
    from parley.settings import Settings

MIN_SECONDS = 0.1  # shorter audio is not worth a request


def iso_language(language: str | None) -> str | None:
    """`de-DE` -> `de`: the transcription API takes ISO-639-1 codes."""
    return language.split("-", 1)[0].lower() if language else None


class OpenAITranscriptionSTT(STT):
    """Batch transcription per utterance on an OpenAI-compatible server (any `sample_rate`; no interims)."""

    def __init__(self, client: openai.AsyncOpenAI, *, model: str = "whisper-1", name: str = "openai",
                 language: str | None = None, phrases: list[str] | None = None, sample_rate: int = 16000,
                 timeout_s: float = 15.0, retries: int = 1) -> None:
        self.client = client
        self.model = model
        self.name = name
        self.language = language
        self.prompt = ", ".join(phrases) if phrases else None
        self.sample_rate = sample_rate
        self.timeout_s = timeout_s
        self.retries = retries

    def stream(self, *, language: str | None = None) -> _UtteranceStream:
        """A stream that transcribes each utterance when it ends."""
        return _UtteranceStream(self, language or self.language)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Send one utterance (any rate, mono int16) and return its text."""
        pcm = np.asarray(pcm, dtype=np.int16)
        seconds = len(pcm) / sample_rate
        lang = language or self.language
        if seconds < MIN_SECONDS:
            return Transcript("", True, 0.0, seconds, language=lang)
        params: dict[str, Any] = {"model": self.model,
                                  "file": ("utterance.wav", wav_bytes(pcm, sample_rate), "audio/wav"),
                                  "response_format": "json"}
        if iso_language(lang):
            params["language"] = iso_language(lang)
        if self.prompt:
            params["prompt"] = self.prompt

        async def once() -> Any:
            try:
                return await self.client.audio.transcriptions.create(**params, timeout=self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - classified into words
                raise classify_error(self, exc) from exc

        try:
            result = await retry_async(once, backoff=Backoff(0.2), attempts=self.retries + 1,
                                       retry_if=lambda exc: isinstance(exc, ProviderError) and exc.retryable)
        except ProviderError as last:
            if not last.retryable:
                raise
            raise self.error(f"transcription failed: {reason(last)}") from last
        text = getattr(result, "text", result if isinstance(result, str) else "")
        return Transcript(str(text).strip(), True, 0.0, seconds, language=lang)


class _UtteranceStream(BatchSTTStream):
    """One request per utterance; `snapshot()` sends the audio so far and keeps the answer."""

    def __init__(self, stt: OpenAITranscriptionSTT, language: str | None) -> None:
        super().__init__(stt, stt.sample_rate)
        self._transcriber = stt
        self._language = language

    async def _decode(self, pcm: Pcm) -> Transcript:
        return await self._transcriber.transcribe(pcm, self._transcriber.sample_rate, language=self._language)


def create(spec: ProviderOptions, *, settings: Settings) -> OpenAITranscriptionSTT:
    """`stt: {provider: openai}`. Options: `base_url`, `api_key_env`, `model` (default whisper-1),
    `phrases` (sent as the prompt), `sample_rate`, `timeout_s`, `retries`."""
    options = spec.options
    base_url, key = openai_endpoint("openai", options, settings, "stt")
    client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)
    return OpenAITranscriptionSTT(
        client, model=spec.model or "whisper-1", language=spec.language,
        phrases=list(options.get("phrases") or []), sample_rate=int(options.get("sample_rate", 16000)),
        timeout_s=float(options.get("timeout_s", 15.0)), retries=int(options.get("retries", 1)),
    )
