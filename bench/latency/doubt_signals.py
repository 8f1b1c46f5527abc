"""Which signal tells a misheard cut sentence from a finished one — the words' confidence, the final
mark, the audio model's probability?

    PYTHONPATH=src .venv/bin/python bench/latency/doubt_signals.py [--silence-ms 100] [--model-silence-ms 200]

The same audio as `final_mark.py` (every finished request and every sentence cut at its mid-sentence
pause, in every bench voice, through G.711 μ-law): Whisper tiny.en decodes it with `--silence-ms` of
trailing silence (the engine's snapshot), Smart Turn judges it with `--model-silence-ms` (the engine asks
at `min_silence_ms`). For the turns the shipped rules would end on the model's "finished" (the word rules
and the final mark have no objection, P(finished) ≥ 0.5), it prints each signal, then what each candidate
extra rule would cost (finished turns held until `doubt_silence_ms`) and save (cut sentences not answered).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.receptionist_script import REQUESTS  # noqa: E402
from bench.latency.speech import PAUSED, UTTERANCES, VOICES, say, telephone  # noqa: E402
from bench.latency.wire import WIRE_PAUSED  # noqa: E402
from parley.engine.turn.detector import UNSURE_END_P  # noqa: E402
from parley.engine.turn.words import judge  # noqa: E402
from parley.providers.stt.whisper import WhisperSTT  # noqa: E402
from parley.providers.turn.smart_turn import SmartTurnModel  # noqa: E402

RATE = 16000


@dataclass
class Row:
    kind: str
    voice: str
    text: str
    heard: str
    held_by_words: bool
    end_p: float | None
    confidence: float | None
    model_p: float

    @property
    def model_finishes(self) -> bool:
        """The shipped rules end this turn on the audio model's word."""
        unsure = self.end_p is not None and self.end_p < UNSURE_END_P
        return not self.held_by_words and not unsure and self.model_p >= 0.5


def collect(silence_ms: int, model_silence_ms: int) -> list[Row]:
    stt = WhisperSTT(model="tiny.en", data_dir=Path(tempfile.mkdtemp()), language="en", threads=1)
    model = SmartTurnModel()
    finished = sorted(set(REQUESTS) | set(UTTERANCES))
    cut = sorted({first for first, _ in WIRE_PAUSED} | {first for first, _ in PAUSED})
    rows = []
    for kind, texts in (("finished", finished), ("cut", cut)):
        for text in texts:
            for voice in VOICES:
                speech = np.concatenate((np.zeros(RATE // 5, np.int16), telephone(say(text, voice, RATE), RATE)))
                t = stt.decode(np.concatenate((speech, np.zeros(RATE * silence_ms // 1000, np.int16))), "en")
                p = model.predict(np.concatenate((speech, np.zeros(RATE * model_silence_ms // 1000, np.int16))))
                heard = " ".join(t.text.split())
                rows.append(Row(kind, voice.name, text, heard, judge(heard, "en").unfinished, t.sentence_end_p,
                                t.confidence, p))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--silence-ms", type=int, default=100)
    ap.add_argument("--model-silence-ms", type=int, default=200)
    args = ap.parse_args()
    rows = collect(args.silence_ms, args.model_silence_ms)
    ended = [r for r in rows if r.model_finishes]
    for kind in ("finished", "cut"):
        mine = [r for r in rows if r.kind == kind]
        kept = [r for r in ended if r.kind == kind]
        print(f"{kind}: {len(mine)} turns; ended by the audio model under the shipped rules: {len(kept)}")
        for r in sorted(kept, key=lambda r: r.confidence or 0.0):
            end = "-" if r.end_p is None else f"{r.end_p:.2f}"
            conf = "-" if r.confidence is None else f"{r.confidence:.2f}"
            print(f"    conf {conf}  mark {end}  model {r.model_p:.2f}  [{r.voice:14s}] {r.text!r} heard {r.heard!r}")
    print("\ncandidate extra holds (of the turns above): finished held / cut saved")
    fin = [r for r in ended if r.kind == "finished"]
    cut = [r for r in ended if r.kind == "cut"]
    for c in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75):
        print(f"    confidence < {c:.2f}: {sum((r.confidence or 0) < c for r in fin)} of {len(fin)} / "
              f"{sum((r.confidence or 0) < c for r in cut)} of {len(cut)}")
    for t in (0.6, 0.7, 0.8, 0.9, 0.95):
        print(f"    model p < {t:.2f}: {sum(r.model_p < t for r in fin)} of {len(fin)} / "
              f"{sum(r.model_p < t for r in cut)} of {len(cut)}")
    for m in (0.6, 0.7, 0.8):
        print(f"    mark < {m:.2f} or none: {sum(r.end_p is None or r.end_p < m for r in fin)} of {len(fin)} / "
              f"{sum(r.end_p is None or r.end_p < m for r in cut)} of {len(cut)}")


if __name__ == "__main__":
    main()
