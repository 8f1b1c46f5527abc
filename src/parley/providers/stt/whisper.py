"""Whisper speech-to-text, offline, with faster-whisper (CTranslate2, int8 on the CPU).

The model is a folder path, a size name (`tiny`, `base.en`, … — downloaded by faster-whisper where the
machine has internet), or — by default, and for `base` — Whisper base from the registry packages,
assembled once into the data dir (see `parley.providers.models`). Each model is loaded once per process
and shared by every call; CTranslate2 queues concurrent requests itself (`num_workers` run in parallel).
Decoding runs in a worker thread, never on the event loop.

Whisper decodes a whole utterance at once: `STTStream` buffers the caller's audio and decodes it on
`end_utterance()` — or earlier, speculatively, once the caller has gone quiet — and yields no interim
results.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.logging import get_logger
from parley.media.resample import resample
from parley.providers import models
from parley.providers.base import STT, Capabilities, Pcm, ProviderError, STTStream, Transcript
from parley.providers.options import ProviderOptions

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from parley.settings import Settings

log = get_logger(__name__)

SAMPLE_RATE = 16000
BUNDLED = "bundled-base"
#: Below this RMS (int16 units, ≈ -60 dBFS) an utterance is silence: nothing is decoded.
SILENCE_RMS = 30.0
#: A segment whose no-speech probability is above this and whose tokens are unlikely is dropped.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
#: Speculative decoding: a 20 ms frame is "speech" above this RMS and above QUIET_RATIO × the loudest
#: frame so far; decoding starts after SPECULATE_AFTER_S of quiet following speech.
LOUD_RMS = 300.0
QUIET_RATIO = 0.1
SPECULATE_AFTER_S = 0.25

_models: dict[tuple[str, int, int], WhisperModel] = {}
_models_lock = threading.Lock()


def _size_names() -> list[str]:
    from faster_whisper.utils import available_models

    return list(available_models())


def _languages() -> set[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return set(_LANGUAGE_CODES)


def resolve_model(value: str | None) -> str:
    """`BUNDLED`, an existing folder, or a faster-whisper size name; `ValueError` for anything else."""
    value = (value or "").strip()
    if value in ("", "base", BUNDLED):
        return BUNDLED
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ValueError(
                f"whisper model folder {path} has no model.bin (a CTranslate2 Whisper model is needed)"
            )
        return str(path.resolve())
    if value in _size_names():
        return value
    raise ValueError(
        f"whisper model {value!r} is neither an existing folder nor a size name "
        f"({', '.join(_size_names())}); leave it empty for the bundled Whisper base"
    )


def normalise_language(language: str | None) -> str | None:
    """`en-US` → `en`; None/`auto` → None (detect); unknown codes → `ValueError`."""
    if not language or language.lower() == "auto":
        return None
    code = language.replace("_", "-").split("-")[0].lower()
    if code not in _languages():
        raise ValueError(f"whisper does not know language {language!r}")
    return code


def load_model(model: str, data_dir: Path, threads: int, workers: int = 1) -> WhisperModel:
    """The process-wide model for `model` (loading it on first use). Blocking: call from a thread."""
    key = (model, threads, workers)
    with _models_lock:
        if key in _models:
            return _models[key]
        from faster_whisper import WhisperModel

        if model == BUNDLED:
            location = str(models.ensure_model(models.WHISPER_BASE, data_dir))
        else:
            location = model
        try:
            loaded = WhisperModel(
                location, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers
            )
        except Exception as exc:  # download failures, broken folders
            raise ProviderError(
                "whisper",
                f"cannot load model {model!r}: {exc}. Use a model folder, or leave WHISPER_MODEL empty "
                "for the bundled Whisper base",
                retryable=False,
                component="stt",
            ) from exc
        _models[key] = loaded
        log.info("whisper model loaded", model=model, threads=threads)
        return loaded


class WhisperSTT(STT):
    """The `whisper` STT provider: 16 kHz, decodes whole utterances (no interim results)."""

    name = "whisper"
    sample_rate = SAMPLE_RATE
    capabilities = Capabilities(streaming=False, interim_results=False, sample_rates=(SAMPLE_RATE,))

    def __init__(
        self,
        *,
        model: str | None,
        data_dir: Path,
        language: str | None = "en",
        threads: int = 2,
        workers: int = 1,
        beam_size: int = 1,
        initial_prompt: str | None = None,
        speculative: bool = True,
    ) -> None:
        self.model = resolve_model(model)
        if self.model == BUNDLED:
            models.check_sources(models.WHISPER_BASE)
        self.language = normalise_language(language)
        if beam_size < 1 or beam_size > 10:
            raise ValueError(f"whisper beam_size must be 1..10, got {beam_size}")
        self.beam_size = beam_size
        self.initial_prompt = initial_prompt
        self.speculative = speculative
        self._data_dir = Path(data_dir)
        self._threads = threads
        self._workers = workers

    async def warm(self) -> None:
        """Assemble and load the model now (at start-up) instead of on the first utterance."""
        await asyncio.to_thread(self._model)

    def _model(self) -> WhisperModel:
        return load_model(self.model, self._data_dir, self._threads, self._workers)

    def stream(self, *, language: str | None = None) -> WhisperStream:
        lang = normalise_language(language) if language else self.language
        return WhisperStream(self, lang, speculative=self.speculative)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        if sample_rate != SAMPLE_RATE:
            pcm = resample(pcm, sample_rate, SAMPLE_RATE)
        lang = normalise_language(language) if language else self.language
        return await asyncio.to_thread(self.decode, pcm, lang)

    def decode(self, pcm: Pcm, language: str | None) -> Transcript:
        """Blocking recognition of 16 kHz int16 `pcm`: an empty-text final for silence or noise."""
        duration = len(pcm) / SAMPLE_RATE
        if len(pcm) < SAMPLE_RATE // 10 or float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) < SILENCE_RMS:
            return Transcript("", True, 0.0, duration, language=language)
        audio = pcm.astype(np.float32) / 32768.0
        try:
            segments, info = self._model().transcribe(
                audio,
                language=language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
                initial_prompt=self.initial_prompt,
                temperature=[0.0, 0.6],
            )
            kept = [s for s in segments if not _is_hallucination(s)]
        except ProviderError:
            raise
        except Exception as exc:
            raise self.error(f"recognition failed: {exc}") from exc
        text = " ".join(s.text.strip() for s in kept).strip()
        confidence = float(np.exp(np.mean([s.avg_logprob for s in kept]))) if kept else None
        return Transcript(text, True, 0.0, duration, confidence=confidence, language=info.language)


def _is_hallucination(segment: Any) -> bool:
    if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOGPROB_FLOOR:
        return True
    return not segment.text.strip()


class WhisperStream(STTStream):
    """Buffers one call's audio; decodes each utterance when the caller stops talking.

    With `speculative` on, decoding starts as soon as the caller has been quiet for
    `SPECULATE_AFTER_S` (trailing quiet does not change the words), so the result is usually ready
    when the engine's end-of-turn silence has elapsed. If the caller speaks again, that early result
    is thrown away and the whole utterance is decoded on `end_utterance()`.
    """

    def __init__(self, stt: WhisperSTT, language: str | None, *, speculative: bool = True) -> None:
        self._stt = stt
        self._language = language
        self._chunks: list[Pcm] = []
        self._offset = 0.0  # seconds of audio before the current utterance
        self._closed = False
        self._speculative = speculative
        self._peak = 0.0
        self._quiet = 0  # trailing quiet samples
        self._early: asyncio.Future[Transcript] | None = None

    async def push(self, pcm: Pcm) -> None:
        if self._closed:
            raise self._stt.error("stream is closed", retryable=False)
        if not len(pcm):
            return
        pcm = np.asarray(pcm, dtype=np.int16)
        self._chunks.append(pcm)
        if self._speculative:
            self._track(pcm)

    def _track(self, pcm: Pcm) -> None:
        level = float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2)))
        if level > max(LOUD_RMS, QUIET_RATIO * self._peak):
            self._peak = max(self._peak, level)
            self._quiet = 0
            if self._early is not None:  # the caller went on talking: the early result is stale
                self._early = None
            return
        self._quiet += len(pcm)
        if self._early is None and self._peak > 0 and self._quiet >= SPECULATE_AFTER_S * SAMPLE_RATE:
            snapshot = np.concatenate(self._chunks)
            self._early = asyncio.ensure_future(asyncio.to_thread(self._stt.decode, snapshot, self._language))
            self._early.add_done_callback(_retrieve)

    async def end_utterance(self) -> Transcript:
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        early, self._early = self._early, None
        self._chunks, self._peak, self._quiet = [], 0.0, 0
        result = (
            await early
            if early is not None
            else await asyncio.to_thread(self._stt.decode, pcm, self._language)
        )
        start = self._offset
        self._offset += len(pcm) / SAMPLE_RATE
        return Transcript(
            result.text, True, start, self._offset, confidence=result.confidence, language=result.language
        )

    async def close(self) -> None:
        self._closed = True
        self._chunks = []
        self._early = None


def _retrieve(future: asyncio.Future[Transcript]) -> None:
    """Mark an abandoned early decode's error as seen (it is decoded again if needed)."""
    if not future.cancelled():
        future.exception()


def create(spec: ProviderOptions, *, settings: Settings) -> WhisperSTT:
    """Factory used by the registry: options `beam_size`, `initial_prompt`, `workers`, `speculative`."""
    opts = spec.options
    unknown = set(opts) - {"beam_size", "initial_prompt", "workers", "speculative"}
    if unknown:
        raise ValueError(f"whisper: unknown option(s) {', '.join(sorted(unknown))}")
    return WhisperSTT(
        model=spec.model or settings.whisper_model,
        data_dir=settings.data_dir,
        language=spec.language,
        threads=settings.whisper_threads,
        workers=int(opts.get("workers", 1)),
        beam_size=int(opts.get("beam_size", 1)),
        initial_prompt=opts.get("initial_prompt"),
        speculative=bool(opts.get("speculative", True)),
    )
