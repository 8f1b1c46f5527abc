"""Piper text-to-speech, offline (ONNX). Default voice: the bundled en_US-joe-medium (22.05 kHz).

A voice is loaded once per process and shared. Text is phonemised (espeak-ng inside piper; one
thread at a time) and synthesised sentence by sentence in worker threads; each sentence's audio is
yielded as soon as it is ready while the next one is already being synthesised.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.providers import models
from parley.providers.base import TTS, Capabilities, Pcm, ProviderError
from parley.providers.options import ProviderOptions

if TYPE_CHECKING:
    from parley.settings import Settings

_voices: dict[str, Any] = {}
_voices_lock = threading.Lock()
_phonemize_lock = threading.Lock()  # espeak-ng keeps global state


def load_voice(onnx: Path) -> Any:
    """The process-wide `PiperVoice` for `onnx` (loaded on first use; ~0.4 s). Blocking."""
    key = str(onnx)
    with _voices_lock:
        if key not in _voices:
            from piper import PiperVoice

            try:
                _voices[key] = PiperVoice.load(key)
            except Exception as exc:
                raise ProviderError("piper", f"cannot load voice {onnx}: {exc}", retryable=False,
                                    component="tts") from exc
        return _voices[key]


class PiperTTS(TTS):
    """The `piper` TTS provider: one chunk per sentence, at the voice's own rate."""

    name = "piper"
    capabilities = Capabilities(streaming=True)

    def __init__(
        self,
        *,
        voice: str | None = None,
        speed: float = 1.0,
        noise_scale: float | None = None,
        volume: float = 1.0,
    ) -> None:
        if not 0.25 <= speed <= 4.0:
            raise ValueError(f"piper speed must be between 0.25 and 4, got {speed}")
        if not 0.0 < volume <= 2.0:
            raise ValueError(f"piper volume must be in (0, 2], got {volume}")
        self._onnx, config = models.piper_voice(voice)
        import json

        meta = json.loads(config.read_text())
        self.sample_rate: int = int(meta["audio"]["sample_rate"])
        base_scale = float(meta.get("inference", {}).get("length_scale", 1.0))
        self._length_scale = base_scale / speed
        self._noise_scale = noise_scale
        self._volume = volume

    async def warm(self) -> None:
        """Load the voice now rather than on the first sentence."""
        await asyncio.to_thread(load_voice, self._onnx)

    def _phonemize(self, text: str) -> list[list[str]]:
        voice = load_voice(self._onnx)
        with _phonemize_lock:
            return [p for p in voice.phonemize(text) if p]

    def _render(self, phonemes: list[str]) -> Pcm:
        from piper import SynthesisConfig

        voice = load_voice(self._onnx)
        config = SynthesisConfig(length_scale=self._length_scale, noise_scale=self._noise_scale)
        try:
            audio = np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), config))
        except Exception as exc:
            raise self.error(f"synthesis failed: {exc}") from exc
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak < 1e-8:
            return np.zeros(audio.size, dtype=np.int16)
        audio = np.clip(audio / peak * self._volume, -1.0, 1.0)
        return (audio * 32767).astype(np.int16)

    async def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """Yield one int16 chunk per sentence of `text` at `sample_rate`."""
        if not text.strip():
            return
        sentences = await asyncio.to_thread(self._phonemize, text)
        next_job: asyncio.Future[Pcm] | None = None
        try:
            for i, phonemes in enumerate(sentences):
                job = next_job or asyncio.ensure_future(asyncio.to_thread(self._render, phonemes))
                next_job = None
                pcm = await job
                if i + 1 < len(sentences):
                    next_job = asyncio.ensure_future(asyncio.to_thread(self._render, sentences[i + 1]))
                yield pcm
        finally:
            if next_job is not None:
                next_job.cancel()


def create(spec: ProviderOptions, *, settings: Settings) -> PiperTTS:
    """Factory used by the registry: `voice` (bundled name or .onnx path), `speed`; options
    `noise_scale`, `volume`."""
    opts = spec.options
    unknown = set(opts) - {"noise_scale", "volume"}
    if unknown:
        raise ValueError(f"piper: unknown option(s) {', '.join(sorted(unknown))}")
    return PiperTTS(
        voice=spec.voice,
        speed=float(spec.speed or 1.0),
        noise_scale=float(opts["noise_scale"]) if "noise_scale" in opts else None,
        volume=float(opts.get("volume", 1.0)),
    )
