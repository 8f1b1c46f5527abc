"""Whisper base and tiny.en (bundled) on telephone-quality speech, silence and noise; early decoding on
`snapshot()`; never blocks the event loop."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from parley.media.resample import resample
from parley.providers.base import Message, Transcript
from parley.providers.factory import build_llm
from parley.providers.stt.whisper import ROLL_AFTER_S, WhisperSTT

from .helpers import words

pytestmark = pytest.mark.slow

SENTENCE = "I would like to book an appointment for Tuesday"


async def test_espeak_speech_over_the_phone_reaches_the_right_intent(  # type: ignore[no-untyped-def]
    tiny_en_stt: WhisperSTT, phone_speech, receptionist, settings
) -> None:
    """With the English default (tiny.en). Base heard "look at a pointment" in about one run in five here:
    its decode of this espeak sentence is not repeatable run to run (cause not found; espeak is borderline)."""
    pcm = resample(phone_speech(SENTENCE, "espeak"), 16000, 8000)
    result = await tiny_en_stt.transcribe(pcm, 8000)  # 8 kHz in: resampled inside
    assert {"appointment", "tuesday"} <= words(result.text), result.text
    llm = build_llm(receptionist.components.llm, settings, agent=receptionist)
    reply = "".join([c.text async for c in llm.chat([Message("user", result.text)])])
    assert reply == "Sure, I can book that for Tuesday. May I have your name, please?"


async def test_stream_decodes_utterance_by_utterance(whisper_stt: WhisperSTT, phone_speech) -> None:  # type: ignore[no-untyped-def]
    first = phone_speech("What are your opening hours?", "piper")
    stream = whisper_stt.stream()
    assert [t async for t in stream.interim()] == []  # batch engine: no interim results
    for i in range(0, len(first), 320):  # 20 ms frames, as a call delivers them
        await stream.push(first[i : i + 320])
    one = await stream.end_utterance()
    assert {"opening", "hours"} <= words(one.text)
    assert one.start == 0.0 and one.end == pytest.approx(len(first) / 16000)
    hiss = (np.random.default_rng(7).standard_normal(16000) * 600).astype(np.int16)  # line noise, no words
    await stream.push(hiss)
    two = await stream.end_utterance()
    assert two.text == "" and two.start == pytest.approx(one.end)
    await stream.close()


async def test_no_words_invented_on_silence_or_noise(whisper_stt: WhisperSTT) -> None:
    loud = (np.random.default_rng(7).standard_normal(16000) * 9000).astype(np.int16)
    for pcm in (np.zeros(16000 * 2, np.int16), loud, np.zeros(100, np.int16)):
        assert (await whisper_stt.transcribe(pcm, 16000)).text == ""


async def test_piper_speech_over_the_phone_is_understood_off_the_loop(
    whisper_stt: WhisperSTT, phone_speech
) -> None:  # type: ignore[no-untyped-def]
    pcm = phone_speech(SENTENCE, "piper")
    await whisper_stt.warm()
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    started = time.perf_counter()
    result = await whisper_stt.transcribe(pcm, 16000)
    elapsed = time.perf_counter() - started
    done.set()
    await beat
    assert result.is_final and result.language == "en"
    heard = words(result.text)
    assert {"appointment", "tuesday"} <= heard and len({"would", "like", "book"} & heard) >= 2
    # the loop kept ticking while Whisper decoded (a blocked loop shows one gap as long as the decode)
    assert len(gaps) > 5 and max(gaps) < elapsed / 2
    assert elapsed < 30  # generous bound for a loaded 2-core machine (bench/ has the real figures)


async def _push_frames(stream, *parts: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    for part in parts:
        for i in range(0, len(part), 320):  # 20 ms frames, as a call delivers them
            await stream.push(part[i : i + 320])


def _silence(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, np.int16)


async def test_snapshot_is_kept_while_only_silence_follows(whisper_stt: WhisperSTT, phone_speech) -> None:  # type: ignore[no-untyped-def]
    speech = phone_speech("What are your opening hours?", "piper")
    stream = whisper_stt.stream()
    assert (await stream.snapshot()) == Transcript("", False)  # nothing pushed: nothing decoded
    await _push_frames(stream, speech, _silence(100))  # the engine asks after ~100 ms of silence
    first, again = await asyncio.gather(stream.snapshot(), stream.snapshot())
    assert not first.is_final and {"opening", "hours"} <= words(first.text)
    assert again == first and stream.decodes == 1  # asked twice, decoded once
    await _push_frames(stream, _silence(600))
    assert (await stream.snapshot()).text == first.text and stream.decodes == 1  # silence adds no words
    final = await stream.end_utterance()
    assert final.is_final and final.text == first.text and stream.decodes == 1  # no second decode
    assert final.end == pytest.approx((len(speech) + 16 * 700) / 16000)
    await stream.close()


async def test_caller_resuming_after_a_pause_is_not_cut(whisper_stt: WhisperSTT, phone_speech) -> None:  # type: ignore[no-untyped-def]
    first = phone_speech("I would like to book", "piper")
    second = phone_speech("an appointment for Tuesday", "piper")
    stream = whisper_stt.stream()
    await _push_frames(stream, first, _silence(100))
    early = await stream.snapshot()  # the engine's snapshot in the caller's pause
    assert "like" in words(early.text) and "tuesday" not in words(early.text)
    await _push_frames(stream, _silence(400), second, _silence(500))
    result = await stream.end_utterance()
    assert {"like", "appointment", "tuesday"} <= words(result.text)
    assert stream.decodes == 2  # the early words were dropped when the caller went on
    await stream.close()


async def test_tiny_en_from_its_package_understands_a_phone_caller(
    tiny_en_stt: WhisperSTT, phone_speech
) -> None:  # type: ignore[no-untyped-def]
    assert tiny_en_stt.model == "tiny.en" and tiny_en_stt.beam_size == 5
    result = await tiny_en_stt.transcribe(resample(phone_speech(SENTENCE, "piper"), 16000, 8000), 8000)
    assert result.is_final and {"appointment", "tuesday"} <= words(result.text)
    hours = await tiny_en_stt.transcribe(phone_speech("What are your opening hours?", "piper"), 16000)
    assert {"opening", "hours"} <= words(hours.text)  # greedy tiny.en heard "opening now"


async def test_a_short_utterance_is_decoded_on_the_short_window_and_a_long_one_on_the_full(
    tiny_en_stt: WhisperSTT, phone_speech
) -> None:  # type: ignore[no-untyped-def]
    """The short encoder window gives the same words (give or take one, e.g. a leading "I") several
    times faster; what does not fit in it (a 30 s monologue), or everything with the window turned off,
    takes faster-whisper's 30 s window."""
    assert tiny_en_stt.window_s == 10.0
    pcm = phone_speech(SENTENCE, "piper")
    short_before, full_before = tiny_en_stt.window_decodes, tiny_en_stt.full_decodes
    t0 = time.perf_counter()
    short = await tiny_en_stt.transcribe(pcm, 16000)
    short_s = time.perf_counter() - t0
    assert tiny_en_stt.window_decodes == short_before + 1 and tiny_en_stt.full_decodes == full_before
    assert {"appointment", "tuesday"} <= words(short.text)

    full_stt = WhisperSTT(model="tiny.en", data_dir=tiny_en_stt._data_dir, language="en", threads=2,
                          window_s=0)
    t0 = time.perf_counter()
    full = await full_stt.transcribe(pcm, 16000)
    full_s = time.perf_counter() - t0
    assert full_stt.window_decodes == 0 and full_stt.full_decodes == 1
    differ = words(full.text) ^ words(short.text)
    assert len(differ) <= 1, f"the windowed decode heard other words: {short.text!r} vs {full.text!r}"
    assert short_s < full_s  # generous: measured ~4× faster (bench/latency/stt_window.py)

    gap = np.zeros(16000, np.int16)
    longest = np.concatenate([pcm, gap] * int(29.5 * 16000 // (len(pcm) + len(gap)) + 1))
    assert len(longest) / 16000 >= 29.0  # with its margin it needs Whisper's whole 30 s window
    before = (tiny_en_stt.window_decodes, tiny_en_stt.full_decodes)
    result = await tiny_en_stt.transcribe(longest[: 30 * 16000], 16000)
    assert "appointment" in words(result.text)
    assert (tiny_en_stt.window_decodes, tiny_en_stt.full_decodes) == (before[0], before[1] + 1)


def test_the_window_grows_with_the_utterance_and_is_off_at_30_s() -> None:
    from parley.providers.stt.whisper_window import window_for

    assert window_for(3.0, 10.0) == 10.0
    assert window_for(9.5, 10.0) == 15.0  # a second of padding must fit after the speech
    assert window_for(20.0, 10.0) == 25.0
    assert window_for(29.5, 10.0) is None  # the full window: faster-whisper's own path
    assert window_for(3.0, 0.0) is None  # turned off


async def test_tiny_en_doubts_the_full_stop_it_writes_where_it_dropped_a_trailing_and(
    tiny_en_stt: WhisperSTT, phone_speech
) -> None:  # type: ignore[no-untyped-def]
    """A caller pausing after "and": tiny.en leaves the "and" out and writes a full stop anyway, but a
    hesitant one — the turn detector reads that doubt (Transcript.sentence_end_p) and waits."""
    gap = np.zeros(1600, np.int16)  # the 100 ms of silence the detector's snapshot is taken at
    paused = np.concatenate([phone_speech("I need to cancel my appointment and"), gap])
    cut = await tiny_en_stt.transcribe(paused, 16000)
    assert "cancel" in words(cut.text) and cut.sentence_end_p is not None and cut.sentence_end_p < 0.5, cut
    done = await tiny_en_stt.transcribe(np.concatenate([phone_speech("What are your opening hours?"), gap]),
                                        16000)
    assert {"opening", "hours"} <= words(done.text) and done.sentence_end_p is not None, done
    assert done.sentence_end_p > 0.6
    open_end = await tiny_en_stt.transcribe(
        np.concatenate([phone_speech("I would like to book an appointment for"), gap]), 16000)
    # here tiny.en writes no final mark (it keeps "for" on this machine; CI's CPU lost it once): no mark,
    # no probability for one — the word rules and the audio model decide that turn
    assert "appointment" in words(open_end.text), open_end
    assert not open_end.text.rstrip().endswith((".", "?", "!")), open_end
    assert open_end.sentence_end_p is None, open_end


async def test_a_long_turn_is_decoded_in_parts_cut_at_the_callers_pauses(
    tiny_en_stt: WhisperSTT, phone_speech
) -> None:  # type: ignore[no-untyped-def]
    """A caller talking for ~16 s with short pauses: the snapshots the engine takes in the pauses are
    kept; once the turn passes 14 s the latest one is committed and later decodes cover only what came
    after it — no decode of the turn needs Whisper's 30 s window, and no words are lost."""
    parts = ["I would like to book an appointment for Tuesday", "and my husband needs one on Wednesday",
             "we would both prefer the morning if you have it", "our son might come along as well",
             "he is seven years old and a little nervous", "and please send a reminder to my phone"]
    rolling = WhisperSTT(model="tiny.en", data_dir=tiny_en_stt._data_dir, language="en", threads=2,
                         roll_after_s=ROLL_AFTER_S)
    stream = rolling.stream()
    full_before = rolling.full_decodes
    for i, text in enumerate(parts):
        await _push_frames(stream, phone_speech(text), _silence(100))
        if i < len(parts) - 1:
            await stream.snapshot()  # the engine's snapshot in a pause; the caller goes on
            await _push_frames(stream, _silence(300))
    final = await stream.end_utterance()
    assert stream.commits == 1  # cut once, at the last pause: the turn had passed 14 s
    assert {"tuesday", "wednesday", "morning", "reminder", "phone"} <= words(final.text), final
    assert final.is_final and final.end == pytest.approx(stream._offset)
    assert rolling.full_decodes == full_before  # every decode fitted the short window
    assert tiny_en_stt.stream().commits == 0 and tiny_en_stt.roll_after_s == 0  # off by default
    short = rolling.stream()  # a turn shorter than 14 s is never cut
    await _push_frames(short, phone_speech(parts[0]), _silence(100))
    await short.snapshot()
    await _push_frames(short, _silence(300), phone_speech(parts[1]), _silence(100))
    assert {"tuesday", "wednesday"} <= words((await short.end_utterance()).text) and short.commits == 0
    with pytest.raises(ValueError, match="roll_after_s must be 0"):
        WhisperSTT(model="tiny.en", data_dir=tiny_en_stt._data_dir, language="en", roll_after_s=2)
