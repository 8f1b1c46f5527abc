"""The detector's whole silence, offline: when would the shipped rules — and candidate extra rules — end
finished turns and sentences cut at a mid-sentence pause?

    PYTHONPATH=src .venv/bin/python bench/latency/turn_trajectory.py [--set tune|fresh|wire] [--cache FILE]

Each sentence goes through an 8 kHz G.711 μ-law round trip with 200 ms of silence before it. Whisper
tiny.en decodes it with `SNAPSHOT_MS` of trailing silence (the engine's early snapshot, `WhisperSTT.decode`),
Smart Turn judges it at 200, 400 and 600 ms of silence (`min_silence_ms` and the re-asks every
`REASK_MS`). From those today's `EndOfTurnDetector` is driven frame by frame (`detector_now`), beside the
rules as they were before part 17 and candidate rules, re-implemented here (`UNSURE_END_P`, threshold 0.5,
`doubt_silence_ms` 800, `max_silence_ms` 1,500). A finished turn pays the silence its rule waits; a cut
sentence is cut into when its rule ends the turn before 800 ms (the wire bench's pauses are 400–800 ms).
About 70 s of decoding per set on 2 cores; `--cache` keeps the decodes for trying other rules.

`--set tune` (default): sentences and voices the wire bench never uses — the set to choose a rule on.
`--set fresh`: a second set of new sentences and voices, to check a rule chosen on `tune` (run once).
`--set wire`: the wire bench's own sentences and voices (`wire.py`), to check a chosen rule; not to tune on.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.latency.receptionist_script import REQUESTS  # noqa: E402
from bench.latency.speech import VOICES, Voice, say, telephone  # noqa: E402
from bench.latency.wire import WIRE_PAUSED  # noqa: E402
from parley.agents.spec import TurnSpec  # noqa: E402
from parley.engine.turn.detector import UNSURE_END_P, AskModel, EndOfTurnDetector, Snapshot  # noqa: E402
from parley.engine.turn.words import judge  # noqa: E402
from parley.providers.stt.whisper import WhisperSTT  # noqa: E402
from parley.providers.turn.smart_turn import SmartTurnModel  # noqa: E402

RATE = 16000
SNAPSHOT_MS = 80  # the words are asked for ~81 ms after the speech ends (docs/turn-detection.md part 12)
ASKS_MS = (200, 400, 600)
DOUBT_MS = 800.0
MAX_MS = 1500.0
THRESHOLD = 0.5
MARKS = (".", "?", "!")

#: Sentences and voices the wire bench does not use (the tuning set).
TUNE_FINISHED = [
    "Do you have any slots left this week?", "I would like to speak to a doctor.",
    "Can I change my appointment to Thursday?", "How much does a cleaning cost?",
    "Is there parking near the clinic?", "My name is Anna Smith.", "I have a question about my bill.",
    "Can you call me back later?", "That works for me.", "Yes, please.", "No, that is all.",
    "I think I lost my card.", "We need a table for four.", "Where is your office?",
    "I will be there at ten.", "Thank you very much.",
]
TUNE_CUT = [
    "I was wondering if", "Could you tell me about", "I need to talk to someone about",
    "The reason I am calling is", "I would like to move my appointment to", "My address is",
    "I want to book a table for", "I have been waiting since", "I am not sure whether",
    "Can I ask you something about", "I wanted to check if", "My date of birth is",
    "I am calling on behalf of", "It is about the",
]
TUNE_VOICES = [
    Voice("espeak-029", "espeak", "en-029", 150),
    Voice("espeak-rp-m3", "espeak", "en-gb-x-rp+m3", 155),
    Voice("espeak-lancs", "espeak", "en-gb-x-gbclan", 145),
    Voice("espeak-us-f2", "espeak", "en-us+f2", 170),
    Voice("espeak-wmids", "espeak", "en-gb-x-gbcwmd", 150),
    Voice("piper-joe-slow", "piper", piper_speed=0.85),
]

#: A second set neither the rules nor the wire bench were tuned on: run once, after choosing on `tune`.
FRESH_FINISHED = [
    "I'd like to make a reservation.", "Can I bring my dog?", "What is the price for a checkup?",
    "I need a new prescription.", "Could you send me the invoice?", "Is doctor Brown available tomorrow?",
    "I'm running about ten minutes late.", "Please put me through to billing.", "Do you take credit cards?",
    "I want to talk to a manager.", "Sounds good.", "Okay, see you then.", "I already paid for it.",
    "Can you repeat that?",
]
FRESH_CUT = [
    "I'm calling to ask about", "The problem I have is", "Could you check whether",
    "I would like an appointment with", "My email address is", "I've been a patient here since",
    "I need to know if", "We were hoping to come in on", "I wanted to tell you that",
    "The last time I was here was", "I'm looking for someone who", "Can I pay with", "It's regarding my",
    "I was told that",
]
FRESH_VOICES = [
    Voice("espeak-us-m7", "espeak", "en-us+m7", 160),
    Voice("espeak-gb-f4", "espeak", "en-gb+f4", 150),
    Voice("espeak-us-f4", "espeak", "en-us+f4", 140),
    Voice("espeak-rp-klatt", "espeak", "en-gb-x-rp+klatt", 150),
    Voice("piper-joe-1.1", "piper", piper_speed=1.1),
]


@dataclass
class Turn:
    kind: str  # finished | cut
    voice: str
    text: str
    heard: str
    held_by_words: bool
    end_p: float | None
    model_p: tuple[float, ...]  # at ASKS_MS

    @property
    def has_mark(self) -> bool:
        return self.heard.endswith(MARKS)


Rule = Callable[[Turn], float]


def shipped(t: Turn, unsure_p: float = UNSURE_END_P) -> float:
    """The silence (ms) at which the rules as they were before part 17 end this turn (re-implemented here;
    the word verdict is the one recorded when the turn was decoded, so a `--cache` written before the
    word rules changed keeps the old one)."""
    if t.held_by_words:
        return MAX_MS
    if t.end_p is not None and t.end_p < unsure_p:
        return DOUBT_MS
    for at, p in zip(ASKS_MS, t.model_p, strict=True):
        if p >= THRESHOLD:
            return float(at)
    return DOUBT_MS


def detector_now(t: Turn) -> float:
    """The silence (ms) at which today's `EndOfTurnDetector` (and word rules) ends this turn, driven
    frame by frame with this turn's recorded words and model answers."""
    det = EndOfTurnDetector(TurnSpec(min_silence_ms=200, max_silence_ms=int(MAX_MS), doubt_silence_ms=int(DOUBT_MS),
                                     threshold=THRESHOLD))
    asks = 0
    silence = 0.0
    words_due: int | None = None
    while silence < MAX_MS + 20:
        silence += 20.0
        steps = [det.silence(silence)]
        for request in steps[0].requests:
            if isinstance(request, Snapshot):
                words_due = request.gap
            elif isinstance(request, AskModel):
                steps.append(det.model_ready(request.gap, t.model_p[min(asks, len(t.model_p) - 1)]))
                asks += 1
        if words_due is not None and silence >= SNAPSHOT_MS:
            steps.append(det.words_ready(words_due, t.heard, t.end_p))
            words_due = None
        if any(step.end for step in steps):
            return silence
    return MAX_MS


def candidate(*, unsure_p: float = UNSURE_END_P, no_mark_needs: float | None = None,
              after_doubt_only: bool = False) -> Rule:
    """The rules before part 17 with the unsure-mark threshold at `unsure_p`, and, with `no_mark_needs`:
    words without a final mark end the turn only at an ask where P ≥ `no_mark_needs` (inf: not before the
    doubt limit) — with `after_doubt_only`, only when the model's first answer was a doubt (its re-asks)."""

    def rule(t: Turn) -> float:
        ends = shipped(t, unsure_p)
        earliest = ASKS_MS[0] if after_doubt_only else 0.0
        if no_mark_needs is None or t.has_mark or not earliest < ends < DOUBT_MS:
            return ends
        asks = list(zip(ASKS_MS, t.model_p, strict=True))[1 if after_doubt_only else 0:]
        return next((float(at) for at, p in asks if p >= no_mark_needs), DOUBT_MS)
    return rule


def collect(sentences: list[tuple[str, str]], voices: list[Voice], stt_model: str = "tiny.en") -> list[Turn]:
    stt = WhisperSTT(model=stt_model, data_dir=Path(tempfile.mkdtemp()), language="en", threads=1)
    model = SmartTurnModel()
    turns = []
    for kind, text in sentences:
        for voice in voices:
            speech = np.concatenate((np.zeros(RATE // 5, np.int16), telephone(say(text, voice, RATE), RATE)))
            t = stt.decode(np.concatenate((speech, np.zeros(RATE * SNAPSHOT_MS // 1000, np.int16))), "en")
            ps = tuple(model.predict(np.concatenate((speech, np.zeros(RATE * ms // 1000, np.int16))))
                       for ms in ASKS_MS)
            heard = " ".join(t.text.split())
            turns.append(Turn(kind, voice.name, text, heard, judge(heard, "en").unfinished, t.sentence_end_p, ps))
    return turns


def report(turns: list[Turn], rules: dict[str, Rule]) -> None:
    fin = [t for t in turns if t.kind == "finished"]
    cut = [t for t in turns if t.kind == "cut"]
    for t in turns:
        end = "-" if t.end_p is None else f"{t.end_p:.2f}"
        ps = " ".join(f"{p:.2f}" for p in t.model_p)
        print(f"  {t.kind:8s} [{t.voice:14s}] ends {shipped(t):5.0f}  mark {end:4s} model {ps}  "
              f"{t.text!r} heard {t.heard!r}{'  (words hold)' if t.held_by_words else ''}")
    print(f"\n{len(fin)} finished turns, {len(cut)} cut sentences")
    print(f"{'rule':44s} {'finished: median / mean wait, held to 800+':44s} cut into (< 800 ms)")
    for name, rule in rules.items():
        waits = sorted(rule(t) for t in fin)
        held = sum(w >= DOUBT_MS for w in waits)
        cut_in = [t for t in cut if rule(t) < DOUBT_MS]
        print(f"{name:44s} {np.median(waits):4.0f} / {np.mean(waits):4.0f} ms, {held:3d} of {len(fin):<22d} "
              f"{len(cut_in)} of {len(cut)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["tune", "fresh", "wire"], default="tune")
    ap.add_argument("--cache", type=Path, help="keep the decodes in this JSON file and reuse them (rules only)")
    ap.add_argument("--stt-model", default="tiny.en", help="the Whisper model of the snapshot (tiny.en ships)")
    args = ap.parse_args()
    if args.set == "tune":
        sentences = [("finished", s) for s in TUNE_FINISHED] + [("cut", s) for s in TUNE_CUT]
        voices = TUNE_VOICES
    elif args.set == "fresh":
        sentences = [("finished", s) for s in FRESH_FINISHED] + [("cut", s) for s in FRESH_CUT]
        voices = FRESH_VOICES
    else:
        sentences = [("finished", s) for s in REQUESTS] + [("cut", first) for first, _ in WIRE_PAUSED]
        voices = VOICES
    if args.cache is not None and args.cache.exists():
        turns = [Turn(**{**row, "model_p": tuple(row["model_p"])}) for row in json.loads(args.cache.read_text())]
    else:
        turns = collect(sentences, voices, args.stt_model)
        if args.cache is not None:
            args.cache.write_text(json.dumps([t.__dict__ for t in turns]))
    rules: dict[str, Rule] = {
        "before (the rules as of 2026-12-07 23:00)": shipped,
        "the detector and word rules now": detector_now,
        "first doubt + no mark -> 800": candidate(no_mark_needs=math.inf, after_doubt_only=True),
        "first doubt + no mark -> needs p >= 0.8": candidate(no_mark_needs=0.8, after_doubt_only=True),
        "first doubt + no mark -> needs p >= 0.9": candidate(no_mark_needs=0.9, after_doubt_only=True),
        "no mark -> needs p >= 0.8": candidate(no_mark_needs=0.8),
        "no mark -> needs p >= 0.9": candidate(no_mark_needs=0.9),
        "unsure below 0.45": candidate(unsure_p=0.45),
        "unsure below 0.42": candidate(unsure_p=0.42),
        "unsure below 0.45 + first doubt/no mark": candidate(unsure_p=0.45, no_mark_needs=math.inf,
                                                             after_doubt_only=True),
        "unsure below 0.42 + first doubt/no mark": candidate(unsure_p=0.42, no_mark_needs=math.inf,
                                                             after_doubt_only=True),
    }
    report(turns, rules)


if __name__ == "__main__":
    main()
