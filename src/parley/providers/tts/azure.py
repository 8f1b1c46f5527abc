"""Azure Speech text to speech over its REST API (`POST /cognitiveservices/v1` with SSML).

The voice comes from the agent YAML (e.g. `de-DE-KatjaNeural`); audio is requested as raw 16-bit
mono PCM at the rate the call needs (`raw-8khz-16bit-mono-pcm` for phone calls, so nothing is
resampled) and yielded chunk by chunk as Azure streams it, so playback starts before synthesis ends.
"""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal
from xml.sax.saxutils import escape, quoteattr

import httpx

from parley.providers.base import TTS, Capabilities, Pcm, ProviderError
from parley.providers.options import ProviderOptions
from parley.providers.streaming import open_first, pcm_stream

if TYPE_CHECKING:
    from parley.settings import Settings

#: sample rate -> X-Microsoft-OutputFormat (SDK names: Raw8Khz16BitMonoPcm, Raw16Khz16BitMonoPcm, …)
OUTPUT_FORMATS = {
    8000: "raw-8khz-16bit-mono-pcm",
    16000: "raw-16khz-16bit-mono-pcm",
    22050: "raw-22050hz-16bit-mono-pcm",
    24000: "raw-24khz-16bit-mono-pcm",
    44100: "raw-44100hz-16bit-mono-pcm",
    48000: "raw-48khz-16bit-mono-pcm",
}
DEFAULT_VOICE = "en-US-JennyNeural"
CHUNK_BYTES = 3200


def build_ssml(text: str, voice: str, language: str | None = None, speed: float | None = None) -> str:
    """An SSML document speaking `text` with `voice` (text escaped; speed as a prosody rate)."""
    lang = language or "-".join(voice.split("-")[:2])
    body = escape(text)
    if speed is not None and abs(speed - 1.0) > 1e-3:
        body = f"<prosody rate={quoteattr(f'{(speed - 1) * 100:+.0f}%')}>{body}</prosody>"
    return (f"<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang={quoteattr(lang)}>"
            f"<voice name={quoteattr(voice)}>{body}</voice></speak>")


def _http_error(owner: TTS, status: int, body: str) -> ProviderError:
    words = {
        400: "Azure rejected the request (400: bad SSML, voice or output format)",
        401: "the Azure Speech key was rejected (401); check AZURE_SPEECH_KEY and AZURE_SPEECH_REGION",
        403: "access denied (403); check AZURE_SPEECH_KEY and AZURE_SPEECH_REGION",
        415: "Azure rejected the content type (415)",
        429: "rate limited by Azure (429)",
    }.get(status, f"Azure answered HTTP {status}")
    detail = body.strip()[:200]
    return owner.error(f"{words}: {detail}" if detail else words, retryable=status not in {400, 401, 403, 415})


def classify(owner: TTS, exc: BaseException) -> ProviderError:
    """An httpx exception in words, as `owner`'s error."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return owner.error("request timed out")
    if isinstance(exc, httpx.TransportError):
        return owner.error(f"cannot reach Azure Speech: {exc or type(exc).__name__}")
    return owner.error(f"{type(exc).__name__}: {exc}")


class AzureTTS(TTS):
    """Streaming Azure neural voices at a chosen raw PCM rate (any of `OUTPUT_FORMATS`, see `for_rate`)."""

    capabilities = Capabilities(streaming=True, sample_rates=tuple(OUTPUT_FORMATS))

    def __init__(self, *, key: str, endpoint: str, voice: str = DEFAULT_VOICE, language: str | None = None,
                 sample_rate: int = 24000, speed: float | None = None, name: str = "azure",
                 first_audio_timeout_s: float = 8.0, stream_timeout_s: float = 15.0, retries: int = 1) -> None:
        if sample_rate not in OUTPUT_FORMATS:
            raise ProviderError(name, f"sample rate {sample_rate} not offered; choose one of "
                                f"{', '.join(map(str, OUTPUT_FORMATS))}", retryable=False, component="tts")
        self.name = name
        self.sample_rate = sample_rate
        self.voice = voice
        self.language = language
        self.speed = speed
        self.url = endpoint.rstrip("/") + "/cognitiveservices/v1"
        self.first_audio_timeout_s = first_audio_timeout_s
        self.stream_timeout_s = stream_timeout_s
        self.retries = retries
        self._headers = {
            "Ocp-Apim-Subscription-Key": key,
            "Content-Type": "application/ssml+xml",
            "X-Microsoft-OutputFormat": OUTPUT_FORMATS[sample_rate],
            "User-Agent": "parley",
        }
        self._client: httpx.AsyncClient | None = None

    def for_rate(self, sample_rate: int) -> AzureTTS:
        """The same voice producing PCM at `sample_rate` (e.g. a phone call's 8000), sharing connections.

        Returns `self` when the rate already matches or Azure offers no raw format at that rate."""
        if sample_rate == self.sample_rate or sample_rate not in self.capabilities.sample_rates:
            return self
        other = copy.copy(self)
        other.sample_rate = sample_rate
        other._headers = {**self._headers, "X-Microsoft-OutputFormat": OUTPUT_FORMATS[sample_rate]}
        other._client = self._http()
        return other

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        return self._client

    async def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """Yield int16 PCM at `sample_rate` for `text`, from the first bytes Azure sends."""
        if not text.strip():
            return
        ssml = build_ssml(text, self.voice, self.language, self.speed).encode()

        async def start() -> tuple[AsyncIterator[bytes], Any]:
            manager = self._http().stream("POST", self.url, content=ssml, headers=self._headers)
            response = await manager.__aenter__()
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                await manager.__aexit__(None, None, None)
                raise _http_error(self, response.status_code, body)

            async def close() -> None:
                await manager.__aexit__(None, None, None)

            return response.aiter_bytes(CHUNK_BYTES), close

        opened = await open_first(self, start, timeout_s=self.first_audio_timeout_s, retries=self.retries,
                                  classify=lambda exc: classify(self, exc), useful=bool)
        async for pcm in pcm_stream(opened, self, self.stream_timeout_s, lambda exc: classify(self, exc)):
            yield pcm

    async def aclose(self) -> None:
        """Close pooled connections."""
        if self._client is not None:
            await self._client.aclose()


def speech_credentials(provider: str, options: Mapping[str, Any], settings: Settings,
                       service: Literal["tts", "stt"]) -> tuple[str, str]:
    """(key, endpoint base URL) for Azure Speech: `AZURE_SPEECH_KEY` + `AZURE_SPEECH_REGION`, or options
    `api_key_env` / `endpoint`. `service` is `tts` or `stt` (the regional host name's prefix, and the
    component an error names)."""
    env_name = options.get("api_key_env")
    key = os.environ.get(str(env_name), "") if env_name else settings.azure_speech_key.get_secret_value()
    region = options.get("region") or settings.azure_speech_region
    endpoint = options.get("endpoint") or (
        f"https://{region}.{service}.speech.microsoft.com" if region else "")
    missing = [n for n, v in [(env_name or "AZURE_SPEECH_KEY", key), ("AZURE_SPEECH_REGION", endpoint)] if not v]
    if missing:
        raise ProviderError(provider, f"not configured: set {' and '.join(missing)}", retryable=False,
                            component=service)
    return key, str(endpoint)


def create(spec: ProviderOptions, *, settings: Settings, sample_rate: int | None = None) -> AzureTTS:
    """`tts: {provider: azure, voice: de-DE-KatjaNeural}`. Options: `sample_rate` (8000 for phone
    calls), `region`/`endpoint`, `api_key_env`, `first_audio_timeout_s`, `retries`."""
    options = spec.options
    key, endpoint = speech_credentials("azure", options, settings, "tts")
    return AzureTTS(
        key=key, endpoint=endpoint, voice=spec.voice or DEFAULT_VOICE, language=spec.language,
        sample_rate=int(sample_rate or options.get("sample_rate", 24000)), speed=spec.speed,
        first_audio_timeout_s=float(options.get("first_audio_timeout_s", options.get("timeout_s", 8.0))),
        stream_timeout_s=float(options.get("stream_timeout_s", 15.0)), retries=int(options.get("retries", 1)),
    )
