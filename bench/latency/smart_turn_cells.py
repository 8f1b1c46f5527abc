"""Smart Turn v3.2 on finished vs cut sentences: P(complete) per voice, path and trailing silence.

    PYTHONPATH=src .venv/bin/python bench/latency/smart_turn_cells.py

Each sentence of `speech.PAUSED` is spoken whole and cut at the word boundary after its first part
(the quietest 10 ms within ±120 ms of where the first part alone ends), then followed by 0.1–0.4 s of
silence; straight at 16 kHz and after an 8 kHz G.711 round trip. Prints full/cut probabilities and
how often the model ranks the finished one higher, and the time per decision.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.speech import PAUSED, VOICES, say, telephone  # noqa: E402
from parley.providers.turn.smart_turn import SmartTurnModel  # noqa: E402

SILENCES = (0.1, 0.2, 0.3, 0.4)


def cut_near(full: np.ndarray, n: int, reach: int = 1920) -> np.ndarray:
    best, where = float("inf"), n
    for c in range(max(80, n - reach), min(len(full) - 80, n + reach), 80):
        energy = float(np.mean(full[c - 80 : c + 80].astype(np.float64) ** 2))
        if energy < best:
            best, where = energy, c
    return full[:where]


def main() -> None:
    model = SmartTurnModel.shared()
    print(f"load avg {os.getloadavg()[0]:.2f}")
    right: dict[tuple[str, str, float], list[bool]] = {}
    times: list[float] = []
    print("voice          path   cut after      " + "  ".join(f"{s:.1f}s full/cut" for s in SILENCES))
    for voice in VOICES:
        for first, rest in PAUSED:
            full = say(f"{first} {rest}", voice)
            prefix = say(first, voice)
            cut = cut_near(full, len(prefix))
            for path in ("16k", "g711"):
                a, b = (full, cut) if path == "16k" else (telephone(full), telephone(cut))
                cells = []
                for s in SILENCES:
                    pad = np.zeros(int(s * 16000), np.int16)
                    start = time.perf_counter()
                    pa = model.predict(np.concatenate([a, pad]))
                    times.append((time.perf_counter() - start) * 1000)
                    pb = model.predict(np.concatenate([b, pad]))
                    right.setdefault((voice.engine, path, s), []).append(pa > pb)
                    cells.append(f"{pa:.2f}/{pb:.2f}{' ' if pa > pb else '!'}")
                print(f"{voice.name:14s} {path:6s} {' '.join(first.split()[-2:]):14s} " + "  ".join(
                    f"{c:15s}" for c in cells))
    print()
    print("finished ranked above cut (count / cells):")
    for (engine, path, s), marks in sorted(right.items()):
        print(f"  {engine:6s} {path:5s} {s:.1f} s: {sum(marks)}/{len(marks)}")
    print(f"decision time: median {statistics.median(times):.1f} ms over {len(times)} (1 thread), "
          f"load avg {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
