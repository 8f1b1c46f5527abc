"""Does the recogniser's missing final mark tell an unfinished sentence from a finished one?

    PYTHONPATH=src .venv/bin/python bench/latency/final_mark.py [--silence-ms 100]

Every finished request (bench/latency/receptionist_script.py `REQUESTS`, bench/latency/speech.py
`UTTERANCES`) and every sentence cut at its mid-sentence pause (wire.py's `WIRE_PAUSED`, speech.py's
`PAUSED`, first part only) in every bench voice, through an 8 kHz G.711 μ-law round trip, 200 ms of
silence before and `--silence-ms` after (what a snapshot early in the silence decodes), decoded by
Whisper tiny.en as the engine's snapshot does (`WhisperSTT.decode`: the short window, beam 5). Each
transcript is judged by the word rules (`engine/turn/words.py`). Reported, for the transcripts the word
rules have no objection to (the turns Smart Turn alone would end): how many carry a final mark, and its
probability — finished sentences against cut ones. A rule "no final mark → doubt" costs the finished
ones without a mark `doubt_silence_ms` and saves the cut ones without a mark from a cut-in.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.receptionist_script import REQUESTS  # noqa: E402
from bench.latency.speech import PAUSED, UTTERANCES, VOICES, say, telephone  # noqa: E402
from bench.latency.wire import WIRE_PAUSED  # noqa: E402
from parley.engine.turn.words import judge  # noqa: E402
from parley.providers.stt.whisper import WhisperSTT  # noqa: E402

RATE = 16000
MARKS = (".", "?", "!")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--silence-ms", type=int, default=100)
    args = ap.parse_args()
    stt = WhisperSTT(model="tiny.en", data_dir=Path(tempfile.mkdtemp()), language="en", threads=2)
    finished = sorted(set(REQUESTS) | set(UTTERANCES))
    cut = sorted({first for first, _ in WIRE_PAUSED} | {first for first, _ in PAUSED})
    rows: dict[str, list[tuple[str, str, str, float | None, bool]]] = {"finished": [], "cut": []}
    for kind, texts in (("finished", finished), ("cut", cut)):
        for text in texts:
            for voice in VOICES:
                pcm = telephone(say(text, voice, RATE), RATE)
                pcm = np.concatenate((np.zeros(RATE // 5, np.int16), pcm,
                                      np.zeros(RATE * args.silence_ms // 1000, np.int16)))
                t = stt.decode(pcm, "en")
                heard = " ".join(t.text.split())
                objection = judge(heard, "en").unfinished
                rows[kind].append((voice.name, text, heard, t.sentence_end_p, objection))
    for kind, items in rows.items():
        free = [r for r in items if not r[4]]
        no_mark = [r for r in free if not r[2].endswith(MARKS)]
        low = [r for r in free if r[2].endswith(MARKS) and r[3] is not None and r[3] < 0.5]
        print(f"{kind}: {len(items)} transcripts, {len(items) - len(free)} held by the word rules; of the "
              f"{len(free)} others: no final mark {len(no_mark)}, a final mark below 0.5 {len(low)}")
        for voice, text, heard, p, _ in no_mark:
            print(f"    no mark   [{voice:14s}] {text!r} heard {heard!r}")
        for voice, text, heard, p, _ in low:
            print(f"    p {p:.2f}    [{voice:14s}] {text!r} heard {heard!r}")
        for limit in (0.5, 0.6, 0.7, 0.8):
            doubted = [r for r in free if not r[2].endswith(MARKS) or (r[3] is not None and r[3] < limit)]
            print(f"    no mark, or a mark below {limit}: {len(doubted)} of {len(free)}")
        if kind == "cut":
            for voice, text, heard, p, _ in free:
                if heard.endswith(MARKS) and (p is None or p >= 0.5):
                    print(f"    p {p if p is None else round(p, 2)}  [{voice:14s}] {text!r} heard {heard!r}")


if __name__ == "__main__":
    main()
