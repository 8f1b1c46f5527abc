"""Whisper on the short encoder window vs the full 30 s window: decode time and WER over a telephone line.

    PYTHONPATH=src .venv/bin/python bench/latency/stt_window.py [--models tiny.en base] [--windows 0 10]
        [--beams 0] [--threads 1]

Every utterance of bench/latency/speech.py (`UTTERANCES`, and the `PAUSED` sentences spoken whole) in
every voice (espeak-ng ×3, piper ×2), through an 8 kHz G.711 μ-law round trip, decoded by
`WhisperSTT.decode` as a call would (int8), once per window (`0` = faster-whisper's own 30 s window)
and beam size (`0` = the model's default beam). Reports decode time
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
    parser.add_argument("--windows", type=float, nargs="+", default=[0.0, 10.0])
    parser.add_argument("--beams", type=int, nargs="+", default=[0], help="0: the model's default beam")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    texts = UTTERANCES + [f"{a} {b}" for a, b in PAUSED]
    cases = [(text, voice, telephone(say(text, voice))) for text in texts for voice in VOICES]
    print(f"{len(cases)} utterances; load average {os.getloadavg()}")
    data_dir = Path(tempfile.mkdtemp(prefix="parley-sttwin-"))
    for model in args.models:
        for window, beam in [(w, b) for w in args.windows for b in args.beams]:
            stt = WhisperSTT(model=model, data_dir=data_dir, language="en", threads=args.threads,
                             window_s=window, beam_size=beam or None)
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
            print(f"{model:8} window {window or 30:4.0f} s beam {stt.beam_size}: decode p50 {statistics.median(times):5.0f} ms, "
                  f"p90 {q[8]:5.0f} ms, WER {100 * errors / words:5.1f} %, "
                  f"short {stt.window_decodes}, full {stt.full_decodes}", flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
