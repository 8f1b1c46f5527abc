"""Where the segmenter puts the end of speech, against where the audio really ends.

    PYTHONPATH=src .venv/bin/python bench/latency/vad_end.py

The first eight `UTTERANCES` and the `PAUSED` first halves of bench/latency/speech.py in every voice,
through an 8 kHz G.711 μ-law round trip, with 200 ms of silence before and 1 s after, on a clean line and
with white noise at 30, 20 and 10 dB SNR. Each goes through `SileroVAD(8000)` and a `SpeechSegmenter` as
the `Listener` feeds it (windows of 256 samples, four sub-frame levels each); reported: the segment's
end (`last_voiced` when the turn ends) minus the audio's true end (its last sample louder than |200| on the
clean line), without the sub-frame levels (the VAD's own end) and with them (the dated-back end).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.speech import PAUSED, UTTERANCES, VOICES, say, telephone, trim  # noqa: E402
from parley.engine.listener import sub_frame_levels  # noqa: E402
from parley.engine.turn.segmenter import SegmentEvent, SpeechSegmenter  # noqa: E402
from parley.media.resample import resample  # noqa: E402
from parley.providers.vad.silero import SileroVAD  # noqa: E402

RATE = 8000


def segment_end(pcm: np.ndarray, levels: bool) -> float | None:
    vad = SileroVAD(RATE)
    seg = SpeechSegmenter(threshold=vad.threshold, min_speech_ms=150, end_silence_ms=300)
    w = vad.window_samples
    for i in range(len(pcm) // w):
        window = pcm[i * w : (i + 1) * w]
        event = seg.update(vad.probability(window), (i + 1) * w / RATE, w * 1000 / RATE,
                           sub_frame_levels(window) if levels else ())
        if event is SegmentEvent.END_OF_TURN and seg.ended is not None:
            return seg.ended.last_voiced
    return None


def main() -> None:
    rng = np.random.default_rng(1)
    print(f"load average before {os.getloadavg()}")
    rows: dict[str, list[tuple[float, float]]] = {}
    for voice in VOICES:
        for text in UTTERANCES[:8] + [first for first, _ in PAUSED]:
            clean = resample(telephone(trim(say(text, voice))), 16000, RATE).astype(np.float64)
            clean = np.concatenate([np.zeros(1600), clean, np.zeros(RATE)])
            true_end = (np.nonzero(np.abs(clean) > 200)[0][-1] + 1) / RATE
            level = np.sqrt(np.mean(clean[np.abs(clean) > 200] ** 2))
            for snr in (None, 30, 20, 10):
                noisy = clean if snr is None else clean + rng.normal(0, level / 10 ** (snr / 20), clean.size)
                pcm = np.clip(noisy, -32768, 32767).astype(np.int16)
                before, after = segment_end(pcm, False), segment_end(pcm, True)
                if before is not None and after is not None:
                    rows.setdefault("clean" if snr is None else f"{snr} dB SNR", []).append(
                        ((before - true_end) * 1000, (after - true_end) * 1000))
    for line, values in rows.items():
        a = np.array(values)
        print(f"{line:11s} ({len(a)}): VAD end − true end median {np.median(a[:, 0]):4.0f} ms, p90 "
              f"{np.percentile(a[:, 0], 90):4.0f} | dated back: median {np.median(a[:, 1]):4.0f}, earliest "
              f"{a[:, 1].min():5.0f}, p90 {np.percentile(a[:, 1], 90):4.0f} ms")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
