"""A cache of synthesized audio for fixed texts: greetings, scripted replies, fillers, reminders.

Keyed by (voice, text, sample rate, speed) and bounded in bytes, least recently used out first. It holds
int16 PCM as read-only numpy arrays (a caller cannot change what the next call plays).

    cache = TTSCache(max_bytes=32 << 20)
    await warm(cache, tts, ["Hello, thanks for calling.", "One moment."])   # at start
    async for pcm in speak(cache, tts, "Hello, thanks for calling."):       # no TTS run: cached
        ...

`warm` and `speak` take any object with `name`, `sample_rate` and `async synthesize(text)` yielding int16
chunks. The voice and speed in the key come from the object's `voice` and `speed` attributes when it has
them (Azure, OpenAI, espeak), or from the caller (`voice=`, `speed=`) — pass them for providers that keep
them private (piper), or two voices of one provider would share entries.

`CachedTTS(tts, cache, keep=…)` is how the engine uses it: a TTS whose `synthesize(text)` answers a cached
text in one chunk without running `tts`, and streams anything else from `tts` without storing it (so
one-off LLM replies never push the fixed texts out) — except the texts in `keep`, stored the first time
they are said in full (the phrases a generative LLM's replies often open with: no start-up cost, no
burst of requests to a cloud TTS). `warm_texts` fills the cache at start. `Engines` keeps one cache per
agent, warms it at start and hands each conversation a `CachedTTS`.

Pure data structure plus small async helpers; no locks (it lives on the event loop).
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from parley.engine.streams import close_stream
from parley.media.resample import resample
from parley.providers.base import TTS, Pcm

_SPACES = re.compile(r"\s+")


class SynthesizesSpeech(Protocol):
    """What the cache needs of a TTS."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[np.ndarray]: ...


def normalise_text(text: str) -> str:
    """The text as keyed: surrounding space removed, runs of white space made one space (case kept: a
    voice may read "US" and "us" differently)."""
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class CacheKey:
    voice: str
    text: str
    sample_rate: int
    speed: float = 1.0

    @classmethod
    def for_tts(cls, tts: Any, text: str, *, voice: str | None = None, speed: float | None = None) -> CacheKey:
        """The key of `text` spoken by `tts`: voice = `voice` or "<name>:<tts.voice>" (or just the name),
        speed = `speed` or `tts.speed` or 1.0."""
        if voice is None:
            own = getattr(tts, "voice", None)
            voice = f"{tts.name}:{own}" if own else str(tts.name)
        if speed is None:
            speed = getattr(tts, "speed", None) or 1.0
        return cls(voice, normalise_text(text), int(tts.sample_rate), float(speed))


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    rejected: int = 0  # entries larger than the whole cache


class TTSCache:
    """Synthesized audio by `CacheKey`, at most `max_bytes` of PCM, least recently used evicted first."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.stats = CacheStats()

    @property
    def bytes(self) -> int:
        """PCM bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[CacheKey]:
        """Least recently used first."""
        return list(self._entries)

    def get(self, key: CacheKey) -> np.ndarray | None:
        """The audio for `key` (read-only int16), now the most recently used; None when absent."""
        pcm = self._entries.get(key)
        if pcm is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return pcm

    def put(self, key: CacheKey, pcm: np.ndarray) -> bool:
        """Store a copy of `pcm` (int16 mono) under `key`, evicting the least recently used entries to
        make room. False (nothing stored) when it is larger than the whole cache."""
        audio = np.array(pcm, dtype=np.int16, copy=True).reshape(-1)
        audio.setflags(write=False)
        if audio.nbytes > self.max_bytes:
            self.stats.rejected += 1
            return False
        self.discard(key)
        while self._entries and self._bytes + audio.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes
            self.stats.evictions += 1
        self._entries[key] = audio
        self._bytes += audio.nbytes
        return True

    def discard(self, key: CacheKey) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


@dataclass
class WarmReport:
    """What `warm` did: texts synthesized, already cached, too big to keep, and failures (text, error)."""

    synthesized: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    too_big: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


async def _synthesize_all(tts: SynthesizesSpeech, text: str) -> np.ndarray:
    chunks = [np.asarray(c, dtype=np.int16).reshape(-1) async for c in tts.synthesize(text)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


async def warm(
    cache: TTSCache,
    tts: SynthesizesSpeech,
    texts: Iterable[str],
    *,
    voice: str | None = None,
    speed: float | None = None,
) -> WarmReport:
    """Synthesize each text not yet cached (one at a time, in order; duplicates once) and store it.
    A text that fails is reported, not raised: a warm-up must not stop a start."""
    report = WarmReport()
    seen: set[CacheKey] = set()
    for text in texts:
        if not normalise_text(text):
            continue
        key = CacheKey.for_tts(tts, text, voice=voice, speed=speed)
        if key in seen:
            continue
        seen.add(key)
        if key in cache:
            report.cached.append(key.text)
            continue
        try:
            pcm = await _synthesize_all(tts, key.text)
        except Exception as exc:  # noqa: BLE001 - any provider failure is reported, not raised
            report.failed.append((key.text, f"{type(exc).__name__}: {exc}"))
            continue
        (report.synthesized if cache.put(key, pcm) else report.too_big).append(key.text)
    return report


async def speak(
    cache: TTSCache,
    tts: SynthesizesSpeech,
    text: str,
    *,
    voice: str | None = None,
    speed: float | None = None,
    store: bool = True,
) -> AsyncGenerator[np.ndarray, None]:
    """The audio of `text`: from the cache when there (one chunk, no TTS run), else streamed from the TTS
    chunk by chunk as it comes — and, with `store`, kept once the whole text has been synthesized (a
    stream abandoned half-way stores nothing)."""
    key = CacheKey.for_tts(tts, text, voice=voice, speed=speed)
    cached = cache.get(key)
    if cached is not None:
        yield cached
        return
    chunks: list[np.ndarray] = []
    stream = tts.synthesize(key.text)
    try:
        async for chunk in stream:
            pcm = np.asarray(chunk, dtype=np.int16).reshape(-1)
            if store:
                chunks.append(pcm)
            yield pcm
    finally:
        await close_stream(stream)  # abandoned (barge-in): the TTS stops at once
    if store:
        cache.put(key, np.concatenate(chunks) if chunks else np.zeros(0, np.int16))


class CachedTTS(TTS):
    """`inner` with the texts warmed into `cache` answered from it (see the module docstring)."""

    def __init__(self, inner: TTS, cache: TTSCache, *, keep: frozenset[str] = frozenset()) -> None:
        self.inner = inner
        self.cache = cache
        self.keep = keep  # normalised texts stored the first time they are synthesized
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.capabilities = inner.capabilities

    def has(self, text: str) -> bool:
        """True when `text` would be answered from the cache."""
        return CacheKey.for_tts(self.inner, text) in self.cache

    def cached_at(self, text: str, sample_rate: int) -> np.ndarray | None:
        """The cached audio of `text` at `sample_rate` (a call's), None when `text` is not cached. Audio
        cached at the voice's own rate is converted once (the whole text, soxr HQ) and kept at
        `sample_rate` too: every later call at that rate plays it without resampling it again."""
        key = CacheKey.for_tts(self.inner, text)
        if key not in self.cache:
            return None  # no miss counted here: the TTS run that follows counts it
        if key.sample_rate == sample_rate:
            return self.cache.get(key)
        at_rate = dataclasses.replace(key, sample_rate=sample_rate)
        if at_rate in self.cache:
            self.cache.get(key)  # the voice's entry is used too: not the next one evicted
            return self.cache.get(at_rate)
        source = self.cache.get(key)
        assert source is not None
        converted = resample(source, key.sample_rate, sample_rate)
        return self.cache.get(at_rate) if self.cache.put(at_rate, converted) else converted

    async def synthesize(self, text: str) -> AsyncGenerator[Pcm, None]:
        """The cached audio of `text` in one chunk, else the inner TTS's stream (stored only for a text in
        `keep`, once synthesized in full)."""
        store = normalise_text(text) in self.keep
        async with aclosing(speak(self.cache, self.inner, text, store=store)) as chunks:
            async for pcm in chunks:
                yield pcm

    async def warm_texts(self, texts: Iterable[str]) -> WarmReport:
        """Synthesize the fixed `texts` into the cache now (failures reported, not raised)."""
        return await warm(self.cache, self.inner, texts)

    def for_rate(self, sample_rate: int) -> TTS:
        """The inner voice at `sample_rate` (when it has it natively), with the same cache: entries are
        keyed by rate, so each rate warms its own."""
        other = self.inner.for_rate(sample_rate)
        return self if other is self.inner else CachedTTS(other, self.cache, keep=self.keep)

    async def warm(self) -> None:
        await self.inner.warm()

    async def aclose(self) -> None:
        await self.inner.aclose()
