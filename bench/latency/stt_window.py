"""Whisper on the short encoder window vs the full 30 s window: decode time and WER over a telephone line.

    PYTHONPATH=src .venv/bin/python bench/latency/stt_window.py [--models tiny.en base] [--window 10]

Every utterance of bench/latency/speech.py (`UTTERANCES`, and the `PAUSED` sentences spoken whole) in
every voice (espeak-ng ×3, piper ×2), through an 8 kHz G.711 μ-law round trip, decoded by
`WhisperSTT.decode` as a call would (int8, one thread, the model's default beam), once with
`window_s=0` (faster-whisper's own 30 s window) and once with the short window. Reports decode time
p50/p90, WER, and how many short-window decodes were refused (decoded again on the full window).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.speech import PAUSED, UTTERANCES, VOICES, say, telephone, word_errors  # noqa: E402
from parley.providers.stt.whisper import WhisperSTT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    texts = UTTERANCES + [f"{a} {b}" for a, b in PAUSED]
    cases = [(text, voice, telephone(say(text, voice))) for text in texts for voice in VOICES]
    print(f"{len(cases)} utterances; load average {os.getloadavg()}")
    data_dir = Path(tempfile.mkdtemp(prefix="parley-sttwin-"))
    for model in args.models:
        for window in (0.0, args.window):
            stt = WhisperSTT(model=model, data_dir=data_dir, language="en", threads=1, window_s=window)
            stt.decode(cases[0][2], "en")  # load and warm
            stt.window_decodes = stt.full_decodes = 0
            times: list[float] = []
            errors = words = 0
            for text, _voice, pcm in cases:
                t0 = time.perf_counter()
                got = stt.decode(pcm, "en").text
                times.append((time.perf_counter() - t0) * 1000)
                e, n = word_errors(text, got)
                errors, words = errors + e, words + n
            q = statistics.quantiles(times, n=10)
            print(f"{model:8} window {window or 30:4.0f} s: decode p50 {statistics.median(times):5.0f} ms, "
                  f"p90 {q[8]:5.0f} ms, WER {100 * errors / words:5.1f} %, "
                  f"short {stt.window_decodes}, full {stt.full_decodes}", flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
