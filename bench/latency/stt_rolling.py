"""Long turns: the decode at the end of the turn with and without the parts cut at the caller's pauses.

    PYTHONPATH=src .venv/bin/python bench/latency/stt_rolling.py [--model tiny.en] [--voices 2]

Turns of 4, 8 and 12 `UTTERANCES` of bench/latency/speech.py said one after another with 400 ms pauses
(~8, ~15 and ~23 s), in each voice, through an 8 kHz G.711 μ-law round trip. Each turn is pushed to a
`WhisperStream` in 20 ms frames as a call does, with a `snapshot()` after 100 ms of every pause (what the
engine asks for) and the decode it starts awaited (as if the pause were long enough to finish it); at the
end, after 100 ms of silence, the snapshot the detector waits for is timed. Once with the parts
(`roll_after_s` 14 s, the default) and once without (every decode of the whole turn). Reports that final
decode's time p50/p90 and the WER of the final transcripts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.speech import UTTERANCES, VOICES, say, telephone, word_errors  # noqa: E402
from parley.providers.stt.whisper import ROLL_AFTER_S, WhisperSTT, WhisperStream  # noqa: E402

FRAME = 320


async def _push(stream: WhisperStream, pcm: np.ndarray) -> None:
    for i in range(0, len(pcm), FRAME):
        await stream.push(pcm[i : i + FRAME])


async def one_turn(stt: WhisperSTT, parts: list[np.ndarray], roll: bool) -> tuple[float, str, int]:
    stream = WhisperStream(stt, "en", roll_after_s=ROLL_AFTER_S if roll else None)
    pause = np.zeros(1600, np.int16)
    for i, pcm in enumerate(parts):
        await _push(stream, pcm)
        await _push(stream, pause)  # 100 ms of silence: the engine's snapshot
        if i < len(parts) - 1:
            await stream.snapshot()
            await _push(stream, np.zeros(4800, np.int16))  # the rest of the 400 ms pause
    t0 = time.perf_counter()
    result = await stream.snapshot()
    took = (time.perf_counter() - t0) * 1000
    await stream.end_utterance()
    return took, result.text, stream.commits


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--voices", type=int, default=len(VOICES))
    args = parser.parse_args()
    print(f"load average before {os.getloadavg()}")
    stt = WhisperSTT(model=args.model, data_dir=Path(tempfile.mkdtemp(prefix="parley-roll-")), language="en",
                     threads=1)
    await stt.warm()
    for count in (4, 8, 12):
        turns = []
        for v, voice in enumerate(VOICES[: args.voices]):  # the same audio for both ways (piper varies)
            texts = [UTTERANCES[(v + k) % len(UTTERANCES)] for k in range(count)]
            turns.append((" ".join(texts), [telephone(say(t, voice)) for t in texts]))
        seconds = statistics.mean(sum(len(p) for p in parts) / 16000 + 0.4 * count for _, parts in turns)
        for roll in (False, True):
            times: list[float] = []
            errors = words = commits = 0
            for said, parts in turns:
                took, text, cuts = await one_turn(stt, parts, roll)
                times.append(took)
                e, n = word_errors(said, text)
                errors, words, commits = errors + e, words + n, commits + cuts
            q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
            print(f"{count} sentences (~{seconds:4.1f} s) parts {'on ' if roll else 'off'}: final decode "
                  f"p50 {statistics.median(times):5.0f} ms, p90 {q[8]:5.0f} ms, WER {100 * errors / words:5.1f} %, "
                  f"cuts {commits}", flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
