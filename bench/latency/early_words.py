"""When the words are asked for: at the VAD's silence (100 ms) or when the sound stops (48 ms of quiet).

    PYTHONPATH=src .venv/bin/python bench/latency/early_words.py

Every utterance of bench/latency/speech.py (`UTTERANCES`, and the `PAUSED` sentences with their pause) in
every voice, through an 8 kHz G.711 μ-law round trip, 200 ms of silence before and 1 s after, on a clean
line and with white noise at 20 dB SNR. Each goes through `SileroVAD(8000)`, a `SpeechSegmenter` and an
`EndOfTurnDetector` as the conversation drives them (per VAD window of 32 ms rather than per 20 ms frame).
Reported: when the first snapshot of the final silence is asked, after the audio's true end (its last
sample louder than |200| on the clean line), with the early ask and without it; and how many snapshots
were asked in a quiet that the sound then broke (each one a decode thrown away), per utterance.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.speech import PAUSED, UTTERANCES, VOICES, say, telephone, trim  # noqa: E402
from parley.agents.spec import TurnSpec  # noqa: E402
from parley.engine.listener import sub_frame_levels  # noqa: E402
from parley.engine.turn import detector as det_module  # noqa: E402
from parley.engine.turn.detector import EndOfTurnDetector, Snapshot  # noqa: E402
from parley.engine.turn.segmenter import SpeechSegmenter  # noqa: E402
from parley.media.resample import resample  # noqa: E402
from parley.providers.vad.silero import SileroVAD  # noqa: E402

RATE = 8000


def asks(pcm: np.ndarray) -> list[tuple[float, int]]:
    """(media time, gap) of every snapshot the detector asks for; the last gap is the final silence's."""
    vad = SileroVAD(RATE)
    seg = SpeechSegmenter(threshold=vad.threshold, min_speech_ms=150, end_silence_ms=10_000)
    det = EndOfTurnDetector(TurnSpec(detector="silence", end_of_turn_silence_ms=900))
    w = vad.window_samples
    out: list[tuple[float, int]] = []
    for i in range(len(pcm) // w):
        window = pcm[i * w : (i + 1) * w]
        t = (i + 1) * w / RATE
        seg.update(vad.probability(window), t, w * 1000 / RATE, sub_frame_levels(window))
        if seg.segment is None or not seg.segment.confirmed:
            continue
        if seg.silence_ms == 0.0:
            if det.silence_ms > 0.0:
                det.speech()
            step = det.quiet(seg.quiet_ms)
        else:
            step = det.silence(seg.silence_ms)
        out += [(t, r.gap) for r in step.requests if isinstance(r, Snapshot)]
        if step.end:
            break
    return out


def main() -> None:
    rng = np.random.default_rng(1)
    print(f"load average before {os.getloadavg()}")
    early_quiet = det_module.SNAPSHOT_AFTER_QUIET_MS
    texts = UTTERANCES + [f"{a} ... {b}" for a, b in PAUSED]
    for snr in (None, 20):
        after: dict[str, list[float]] = {"early": [], "vad": []}
        stale: dict[str, list[int]] = {"early": [], "vad": []}
        for voice in VOICES:
            for text in texts:
                clean = resample(telephone(trim(say(text, voice))), 16000, RATE).astype(np.float64)
                clean = np.concatenate([np.zeros(1600), clean, np.zeros(RATE)])
                true_end = (np.nonzero(np.abs(clean) > 200)[0][-1] + 1) / RATE
                level = np.sqrt(np.mean(clean[np.abs(clean) > 200] ** 2))
                noisy = clean if snr is None else clean + rng.normal(0, level / 10 ** (snr / 20), clean.size)
                pcm = np.clip(noisy, -32768, 32767).astype(np.int16)
                for mode, quiet_ms in (("early", early_quiet), ("vad", 1e9)):
                    det_module.SNAPSHOT_AFTER_QUIET_MS = quiet_ms
                    got = asks(pcm)
                    if not got:
                        continue
                    last_gap = got[-1][1]
                    final = [t for t, gap in got if gap == last_gap]
                    after[mode].append((final[0] - true_end) * 1000)
                    stale[mode].append(sum(1 for _, gap in got if gap != last_gap))
        det_module.SNAPSHOT_AFTER_QUIET_MS = early_quiet
        line = "clean line" if snr is None else f"noise at {snr} dB SNR"
        print(f"{line}: {len(after['early'])} utterances")
        for mode in ("vad", "early"):
            a = after[mode]
            q = statistics.quantiles(a, n=10)
            s = stale[mode]
            print(f"  {mode:5}: words asked {statistics.median(a):4.0f} ms after the speech ended "
                  f"(p10 {q[0]:4.0f}, p90 {q[8]:4.0f}); snapshots thrown away per utterance "
                  f"{sum(s) / len(s):.2f} (max {max(s)})")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
