"""The synthesized-audio cache: keys, byte bound, LRU order, warm-up, and serving without the TTS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from parley.engine.tts_cache import CachedTTS, CacheKey, TTSCache, normalise_text, speak, warm
from parley.media.resample import resample
from tests.engine.fakes import ToneTTS


class CountingTTS:
    """A TTS that says each text as `len(text) * 10` samples in two chunks, and counts its calls."""

    def __init__(self, name: str = "fake", sample_rate: int = 16000, voice: str | None = None,
                 speed: float | None = None, fail_on: str | None = None) -> None:
        self.name = name
        self.sample_rate = sample_rate
        if voice is not None:
            self.voice = voice
        if speed is not None:
            self.speed = speed
        self.calls: list[str] = []
        self.fail_on = fail_on

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        self.calls.append(text)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("voice broke")
        n = len(text) * 10
        audio = (np.arange(n) % 100).astype(np.int16)
        yield audio[: n // 2]
        yield audio[n // 2 :]


def _pcm(samples: int, value: int = 1) -> np.ndarray:
    return np.full(samples, value, np.int16)


def _key(text: str, voice: str = "v") -> CacheKey:
    return CacheKey(voice, text, 16000, 1.0)


# --- keys ------------------------------------------------------------------------------------

def test_key_takes_voice_rate_speed_and_normalised_text() -> None:
    tts = CountingTTS("azure", 24000, voice="en-US-JennyNeural", speed=1.1)
    key = CacheKey.for_tts(tts, "  Hello,\n  world ")
    assert key == CacheKey("azure:en-US-JennyNeural", "Hello, world", 24000, 1.1)
    assert CacheKey.for_tts(CountingTTS("piper", 22050), "Hi") == CacheKey("piper", "Hi", 22050, 1.0)
    assert CacheKey.for_tts(CountingTTS("piper"), "Hi", voice="piper:joe", speed=1.2).voice == "piper:joe"


def test_different_voice_rate_speed_or_text_are_different_entries() -> None:
    base = CacheKey("v", "Hello", 16000, 1.0)
    others = [CacheKey("w", "Hello", 16000, 1.0), CacheKey("v", "Hello", 8000, 1.0),
              CacheKey("v", "Hello", 16000, 1.2), CacheKey("v", "hello", 16000, 1.0)]
    cache = TTSCache()
    cache.put(base, _pcm(10))
    for other in others:
        assert cache.get(other) is None
    assert normalise_text(" a \t b ") == "a b"


# --- the store -------------------------------------------------------------------------------

def test_get_returns_a_read_only_copy() -> None:
    cache = TTSCache()
    original = _pcm(100, 7)
    assert cache.put(_key("a"), original)
    original[:] = 0
    got = cache.get(_key("a"))
    assert got is not None and got.dtype == np.int16 and np.all(got == 7)
    with pytest.raises(ValueError):
        got[0] = 1
    assert cache.stats.hits == 1 and cache.get(_key("b")) is None and cache.stats.misses == 1


def test_bounded_in_bytes_least_recently_used_goes_first() -> None:
    cache = TTSCache(max_bytes=1000)  # 500 samples
    cache.put(_key("a"), _pcm(200))
    cache.put(_key("b"), _pcm(200))
    assert cache.bytes == 800
    cache.get(_key("a"))  # a is now the most recently used
    cache.put(_key("c"), _pcm(200))  # needs room: b goes
    assert _key("b") not in cache and _key("a") in cache and _key("c") in cache
    assert cache.bytes == 800 and cache.stats.evictions == 1
    assert cache.keys() == [_key("a"), _key("c")]
    cache.put(_key("d"), _pcm(500))  # as big as the whole cache: everything else goes
    assert cache.keys() == [_key("d")] and cache.bytes == 1000


def test_an_entry_larger_than_the_cache_is_refused_and_evicts_nothing() -> None:
    cache = TTSCache(max_bytes=100)
    cache.put(_key("a"), _pcm(10))
    assert not cache.put(_key("big"), _pcm(51))
    assert cache.keys() == [_key("a")] and cache.stats.rejected == 1


def test_replacing_an_entry_keeps_the_byte_count_right() -> None:
    cache = TTSCache(max_bytes=1000)
    cache.put(_key("a"), _pcm(100))
    cache.put(_key("a"), _pcm(300))
    assert len(cache) == 1 and cache.bytes == 600
    cache.discard(_key("a"))
    assert cache.bytes == 0 and len(cache) == 0
    cache.put(_key("b"), _pcm(1))
    cache.clear()
    assert cache.bytes == 0 and not cache.keys()


def test_max_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TTSCache(max_bytes=0)


# --- warm and speak --------------------------------------------------------------------------

async def test_warm_synthesizes_each_text_once() -> None:
    tts = CountingTTS(voice="joe")
    cache = TTSCache()
    report = await warm(cache, tts, ["Hello there.", "One moment.", "Hello  there.", "", "One moment."])
    assert tts.calls == ["Hello there.", "One moment."]
    assert report.synthesized == ["Hello there.", "One moment."] and not report.failed
    again = await warm(cache, tts, ["Hello there."])
    assert again.cached == ["Hello there."] and tts.calls == ["Hello there.", "One moment."]
    pcm = cache.get(CacheKey.for_tts(tts, "Hello there."))
    assert pcm is not None and len(pcm) == len("Hello there.") * 10  # both chunks, joined


async def test_warm_reports_failures_and_texts_too_big_and_goes_on() -> None:
    tts = CountingTTS(fail_on="broken")
    cache = TTSCache(max_bytes=300)
    report = await warm(cache, tts, ["a broken one", "this one is far too long to keep", "ok"])
    assert report.failed == [("a broken one", "RuntimeError: voice broke")]
    assert report.too_big == ["this one is far too long to keep"]
    assert report.synthesized == ["ok"]


async def test_a_warmed_greeting_is_served_without_running_the_tts() -> None:
    tts = CountingTTS(voice="joe")
    cache = TTSCache()
    await warm(cache, tts, ["Thanks for calling Parley."])
    calls = len(tts.calls)
    chunks = [c async for c in speak(cache, tts, "Thanks for calling Parley.")]
    assert len(tts.calls) == calls  # the TTS did not run
    assert len(chunks) == 1 and len(chunks[0]) == len("Thanks for calling Parley.") * 10


async def test_speak_streams_a_miss_and_keeps_it_for_next_time() -> None:
    tts = CountingTTS()
    cache = TTSCache()
    first = [c async for c in speak(cache, tts, "Goodbye.")]
    assert len(first) == 2 and tts.calls == ["Goodbye."]  # streamed as the TTS yields
    second = [c async for c in speak(cache, tts, "Goodbye.")]
    assert tts.calls == ["Goodbye."]
    assert np.array_equal(np.concatenate(first), second[0])


async def test_speak_abandoned_half_way_stores_nothing() -> None:
    tts = CountingTTS()
    cache = TTSCache()
    stream = speak(cache, tts, "Interrupted reply.")
    await stream.__anext__()
    await stream.aclose()  # barge-in: the caller spoke
    assert len(cache) == 0
    [c async for c in speak(cache, tts, "Not kept.", store=False)]
    assert len(cache) == 0


async def test_voices_do_not_share_entries() -> None:
    joe, amy = CountingTTS("piper"), CountingTTS("piper")
    cache = TTSCache()
    await warm(cache, joe, ["Hello."], voice="piper:joe")
    [c async for c in speak(cache, amy, "Hello.", voice="piper:amy")]
    assert amy.calls == ["Hello."]


async def test_a_cached_text_is_converted_to_a_calls_rate_once() -> None:
    """The voice speaks at 16 kHz, a phone call runs at 8 kHz: a cached greeting is converted once (the whole
    text) and kept at 8 kHz, so every later call plays it with no TTS run and no second conversion."""
    tts = ToneTTS()
    cache = TTSCache()
    voice = CachedTTS(tts, cache)
    await voice.warm_texts(["Thanks for calling Parley."])
    native = cache.get(CacheKey.for_tts(tts, "Thanks for calling Parley."))
    assert native is not None and tts.started == ["Thanks for calling Parley."]

    first = voice.cached_at("Thanks for calling Parley.", 8000)
    again = voice.cached_at("Thanks  for calling Parley. ", 8000)
    assert first is not None and again is first  # converted once, then served as stored
    assert first.size == round(native.size * 8000 / 16000)
    assert np.array_equal(first, resample(native, 16000, 8000))
    assert CacheKey.for_tts(tts, "Thanks for calling Parley.").sample_rate == 16000 and len(cache) == 2
    assert voice.cached_at("Thanks for calling Parley.", 16000) is native
    assert voice.cached_at("Not said before.", 8000) is None
    assert tts.started == ["Thanks for calling Parley."]
