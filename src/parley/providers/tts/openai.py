"""Text to speech through `POST /v1/audio/speech` (OpenAI and compatible servers such as Kokoro-FastAPI,
openedai-speech, LocalAI) with `response_format: pcm`: raw 24 kHz 16-bit mono, streamed as it comes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from parley.providers.base import TTS, Capabilities, Pcm
from parley.providers.llm.openai import classify_error, openai_endpoint
from parley.providers.options import ProviderOptions
from parley.providers.streaming import open_first, pcm_stream

try:
    import openai
except ImportError as exc:  # pragma: no cover
    raise ImportError("the openai providers need the 'cloud' extra: pip install 'parley[cloud]'") from exc

if TYPE_CHECKING:
    from parley.settings import Settings

PCM_RATE = 24000  # what the API sends for response_format=pcm
CHUNK_BYTES = 2400 * 2  # 100 ms


class OpenAISpeechTTS(TTS):
    """Streamed speech from an OpenAI-compatible `/v1/audio/speech` endpoint (24 kHz PCM only)."""

    capabilities = Capabilities(streaming=True)

    sample_rate = PCM_RATE

    def __init__(self, client: openai.AsyncOpenAI, *, model: str = "gpt-4o-mini-tts", voice: str = "alloy",
                 name: str = "openai", speed: float | None = None, instructions: str | None = None,
                 first_audio_timeout_s: float = 8.0, stream_timeout_s: float = 15.0, retries: int = 1) -> None:
        self.client = client
        self.model = model
        self.voice = voice
        self.name = name
        self.speed = speed
        self.instructions = instructions
        self.first_audio_timeout_s = first_audio_timeout_s
        self.stream_timeout_s = stream_timeout_s
        self.retries = retries

    async def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """Yield 24 kHz int16 PCM chunks for `text` as the server sends them."""
        if not text.strip():
            return
        params: dict[str, Any] = {"model": self.model, "voice": self.voice, "input": text, "response_format": "pcm"}
        if self.speed is not None:
            params["speed"] = self.speed
        if self.instructions:
            params["instructions"] = self.instructions

        async def start() -> tuple[AsyncIterator[bytes], Any]:
            manager = self.client.audio.speech.with_streaming_response.create(**params)
            response = await manager.__aenter__()

            async def close() -> None:
                await manager.__aexit__(None, None, None)

            return response.iter_bytes(CHUNK_BYTES), close

        opened = await open_first(self, start, timeout_s=self.first_audio_timeout_s, retries=self.retries,
                                  classify=lambda exc: classify_error(self, exc), useful=bool)
        async for pcm in pcm_stream(opened, self, self.stream_timeout_s, lambda exc: classify_error(self, exc)):
            yield pcm


def create(spec: ProviderOptions, *, settings: Settings) -> OpenAISpeechTTS:
    """`tts: {provider: openai}`. Options: `base_url`, `api_key_env`, `model` (default gpt-4o-mini-tts),
    `voice` (default alloy), `speed`, `instructions`, `first_audio_timeout_s`, `retries`."""
    options = spec.options
    base_url, key = openai_endpoint("openai", options, settings, "tts")
    client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=30.0)
    return OpenAISpeechTTS(
        client, model=spec.model or "gpt-4o-mini-tts", voice=spec.voice or "alloy",
        speed=spec.speed, instructions=options.get("instructions"),
        first_audio_timeout_s=float(options.get("first_audio_timeout_s", options.get("timeout_s", 8.0))),
        stream_timeout_s=float(options.get("stream_timeout_s", 15.0)), retries=int(options.get("retries", 1)),
    )
