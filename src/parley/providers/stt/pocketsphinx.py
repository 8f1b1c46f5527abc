"""PocketSphinx speech-to-text: light, streaming, offline (US English model inside the wheel, 16 kHz).

Much less accurate than Whisper, but it recognises while the caller speaks and gives interim
results. Decoders take about half a second to load, so finished streams hand theirs back to a
process-wide pool for the next call. Decoding runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.media.resample import resample
from parley.providers.base import STT, Capabilities, Pcm, STTStream, Transcript
from parley.providers.options import ProviderOptions

if TYPE_CHECKING:
    from parley.settings import Settings

SAMPLE_RATE = 16000
#: Audio is handed to the decoder in blocks of this many samples (100 ms).
BLOCK = 1600

_pool: list[Any] = []
_pool_lock = threading.Lock()


def _new_decoder() -> Any:
    from pocketsphinx import Decoder

    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")


def _take_decoder() -> Any:
    with _pool_lock:
        if _pool:
            return _pool.pop()
    return _new_decoder()


def _give_back(decoder: Any) -> None:
    with _pool_lock:
        if len(_pool) < 8:
            _pool.append(decoder)


def _hyp_text(decoder: Any) -> str:
    hyp = decoder.hyp()
    if hyp is None:
        return ""
    words = [w for w in hyp.hypstr.split() if not w.startswith("<") and w not in ("[NOISE]",)]
    return " ".join(words)


class PocketSphinxSTT(STT):
    """The `pocketsphinx` STT provider (English only, 16 kHz): recognises while the caller speaks."""

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE
    punctuates = False
    capabilities = Capabilities(streaming=True, interim_results=True, sample_rates=(SAMPLE_RATE,))

    def __init__(self, *, language: str | None = "en") -> None:
        if language and language.replace("_", "-").split("-")[0].lower() != "en":
            raise ValueError(f"pocketsphinx only has a US English model, not {language!r}")

    def stream(self, *, language: str | None = None) -> PocketSphinxStream:
        return PocketSphinxStream(self)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        if sample_rate != SAMPLE_RATE:
            pcm = resample(pcm, sample_rate, SAMPLE_RATE)
        stream = self.stream()
        try:
            await stream.push(pcm)
            return await stream.end_utterance()
        finally:
            await stream.close()


class PocketSphinxStream(STTStream):
    """One call's decoder: audio is decoded as it arrives; interim text is published when it changes."""

    def __init__(self, stt: PocketSphinxSTT) -> None:
        self._stt = stt
        self._decoder: Any = None
        self._pending: list[Pcm] = []
        self._pending_len = 0
        self._in_utt = False
        self._lock = asyncio.Lock()
        self._interim: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._last_interim = ""
        self._offset = 0.0
        self._samples = 0
        self._closed = False

    async def push(self, pcm: Pcm) -> None:
        if self._closed:
            raise self._stt.error("stream is closed", retryable=False)
        if not len(pcm):
            return
        self._pending.append(np.asarray(pcm, dtype=np.int16))
        self._pending_len += len(pcm)
        if self._pending_len >= BLOCK:
            await self._feed()

    async def _feed(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            block = np.concatenate(self._pending)
            self._pending, self._pending_len = [], 0
            self._samples += len(block)
            text = await asyncio.to_thread(self._process, block)
        if text and text != self._last_interim:
            self._last_interim = text
            now = self._offset + self._samples / SAMPLE_RATE
            self._interim.put_nowait(Transcript(text, False, self._offset, now))

    def _process(self, block: Pcm) -> str:
        try:
            if self._decoder is None:
                self._decoder = _take_decoder()
            if not self._in_utt:
                self._decoder.start_utt()
                self._in_utt = True
            self._decoder.process_raw(block.tobytes(), False, False)
            return _hyp_text(self._decoder)
        except Exception as exc:
            raise self._stt.error(f"decoding failed: {exc}") from exc

    def _finish(self) -> str:
        if not self._in_utt:
            return ""
        try:
            self._decoder.end_utt()
            self._in_utt = False
            return _hyp_text(self._decoder)
        except Exception as exc:
            self._in_utt = False
            raise self._stt.error(f"decoding failed: {exc}") from exc

    async def end_utterance(self) -> Transcript:
        await self._feed()
        async with self._lock:
            text = await asyncio.to_thread(self._finish)
        start = self._offset
        self._offset += self._samples / SAMPLE_RATE
        self._samples = 0
        self._last_interim = ""
        return Transcript(text, True, start, self._offset)

    async def snapshot(self) -> Transcript:
        """The decoder's hypothesis for the audio so far (pending audio decoded first), not final."""
        await self._feed()
        async with self._lock:
            text = _hyp_text(self._decoder) if self._in_utt else ""
        return Transcript(text, False, self._offset, self._offset + self._samples / SAMPLE_RATE)

    async def interim(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._interim.get()
            if item is None:
                return
            yield item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._interim.put_nowait(None)
        async with self._lock:
            decoder, self._decoder = self._decoder, None
            if decoder is not None:
                if self._in_utt:
                    await asyncio.to_thread(decoder.end_utt)
                    self._in_utt = False
                _give_back(decoder)


def create(spec: ProviderOptions, *, settings: Settings) -> PocketSphinxSTT:
    """Factory used by the registry (no options)."""
    if spec.options:
        raise ValueError(f"pocketsphinx: unknown option(s) {', '.join(sorted(spec.options))}")
    return PocketSphinxSTT(language=spec.language)
