"""Answering-machine detection on real synthesised speech (espeak-ng) through G.711, and a real tone."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np

from parley.engine.amd import AmdDetector, is_machine_text, tone_of
from parley.media.g711 import ulaw_decode, ulaw_encode

RATE = 8000


def _speech(text: str, tmp_path: Path, speech_wav) -> np.ndarray:  # type: ignore[no-untyped-def]
    src = speech_wav(text, engine="espeak")
    out = tmp_path / "8k.wav"
    subprocess.run(["sox", str(src), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return ulaw_decode(ulaw_encode(pcm))


def _run(pcm: np.ndarray, det: AmdDetector | None = None):  # type: ignore[no-untyped-def]
    det = det or AmdDetector(RATE)
    for i in range(0, pcm.size - 160 + 1, 160):
        r = det.push(pcm[i:i + 160])
        if r:
            return r
    return None


def _beep(hz: float, s: float) -> np.ndarray:
    t = np.arange(int(RATE * s)) / RATE
    return (12000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_person_saying_hello_then_waiting(tmp_path: Path, speech_wav) -> None:  # type: ignore[no-untyped-def]
    pcm = np.concatenate([np.zeros(2400, np.int16), _speech("Hello?", tmp_path, speech_wav), np.zeros(RATE * 3, np.int16)])
    r = _run(pcm)
    assert r is not None and r.result == "human" and "short greeting" in r.reason and r.at_ms < 2500


def test_long_greeting_is_a_machine(tmp_path: Path, speech_wav) -> None:  # type: ignore[no-untyped-def]
    text = "Hi, you have reached the voicemail of Anna Miller. I cannot take your call right now, please leave a message."
    r = _run(np.concatenate([np.zeros(1600, np.int16), _speech(text, tmp_path, speech_wav)]))
    assert r is not None and r.result == "machine" and "uninterrupted greeting" in r.reason
    assert 2400 <= r.at_ms <= 3500


def test_beep_is_a_machine_and_marks_where_to_speak() -> None:
    assert tone_of(_beep(1000, 0.02), RATE) == 1000
    noise = np.random.default_rng(1).normal(0, 3000, 160).astype(np.int16)
    assert tone_of(noise, RATE) is None
    r = _run(np.concatenate([np.zeros(800, np.int16), _beep(850, 0.5)]))
    assert r is not None and r.result == "machine" and r.beep_hz is not None and abs(r.beep_hz - 850) < 30
    det = AmdDetector(RATE)
    det.result = r
    pcm = np.concatenate([_beep(1000, 0.4), np.zeros(800, np.int16)])
    hows = [det.beep_or_end(pcm[i:i + 160]) for i in range(0, pcm.size, 160)]
    assert [h for h in hows if h][0] == "beep"


def test_machine_words_and_silence() -> None:
    assert is_machine_text("Hi, it's Tom. Leave a message!") == "Leave a message"
    assert is_machine_text("Hello, who is this?") is None
    det = AmdDetector(RATE)
    assert det.add_text("please leave your name and number") is not None
    r = _run(np.zeros(RATE * 6, np.int16))
    assert r is not None and r.result == "unknown" and "nothing said" in r.reason
