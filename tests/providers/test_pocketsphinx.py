"""PocketSphinx: streaming recognition with interim results."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from parley.media.resample import resample
from parley.media.wav import read_wav
from parley.providers.base import Transcript
from parley.providers.stt.pocketsphinx import PocketSphinxSTT

from .helpers import words

pytestmark = pytest.mark.slow


async def test_interim_results_then_a_final(speech_wav) -> None:  # type: ignore[no-untyped-def]
    pcm, rate = read_wav(speech_wav("I would like to book an appointment for Tuesday", engine="piper"))
    pcm = resample(pcm, rate, 16000)
    stt = PocketSphinxSTT()
    stream = stt.stream()
    interims: list[Transcript] = []

    async def collect() -> None:
        async for t in stream.interim():
            interims.append(t)

    collector = asyncio.create_task(collect())
    for i in range(0, len(pcm), 320):
        await stream.push(pcm[i : i + 320])
    so_far = await stream.snapshot()  # the hypothesis before the utterance ends
    assert not so_far.is_final and "appointment" in words(so_far.text)
    final = await stream.end_utterance()
    await stream.close()
    await asyncio.wait_for(collector, 5)
    assert len(interims) >= 3 and all(not t.is_final for t in interims)
    assert interims[0].end < final.end  # words were heard before the caller finished
    assert final.is_final and {"book", "appointment"} <= words(final.text)

    # the decoder went back to the pool and a new stream works on a second utterance
    assert "appointment" in words((await stt.transcribe(pcm, 16000)).text)


async def test_silence_gives_empty_final() -> None:
    stream = PocketSphinxSTT().stream()
    await stream.push(np.zeros(16000, np.int16))
    assert (await stream.end_utterance()).text == ""
    await stream.close()
    with pytest.raises(Exception, match="closed"):
        await stream.push(np.zeros(320, np.int16))
