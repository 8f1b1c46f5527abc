"""Caller speech for the latency benchmarks: several voices (espeak-ng variants, the piper voice at two
speeds), the telephone path (8 kHz G.711 round trip), and word error rate."""

from __future__ import annotations

import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from parley.media.resample import resample
from parley.media.wav import read_wav

#: Questions and requests a caller might say to a receptionist (no digits: WER stays about words).
UTTERANCES = [
    "I would like to book an appointment for next Tuesday.",
    "What are your opening hours on Saturday?",
    "Can I speak to a person about my bill, please?",
    "Do you have any tables free tonight?",
    "I need to cancel my reservation.",
    "Where is your office located?",
    "How much does a standard cleaning cost?",
    "Is there parking near the building?",
    "Could you send me the invoice by email?",
    "My package has not arrived yet.",
    "Can I change the time of my booking?",
    "Who should I talk to about a refund?",
]

#: Sentences with a pause in the middle: (first part, rest). The pause comes after the first part.
PAUSED = [
    ("I would like to book a table for", "four people on Friday evening."),
    ("I need to change my appointment and", "cancel the one after it."),
    ("I am calling because", "my order has not arrived yet."),
    ("My number is", "five five five, one two three four."),
    ("Can you put me through to", "the billing department please?"),
    ("I wanted to ask about", "your opening hours on Sunday."),
]


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str  # "espeak" | "piper"
    espeak_voice: str = "en-us"
    wpm: int = 150
    piper_speed: float = 1.0


VOICES = [
    Voice("espeak-us", "espeak", "en-us", 150),
    Voice("espeak-gb-f", "espeak", "en-gb+f3", 140),
    Voice("espeak-scot", "espeak", "en-gb-scotland", 160),
    Voice("piper-joe", "piper"),
    Voice("piper-joe-fast", "piper", piper_speed=1.2),
]


@lru_cache(maxsize=1)
def _piper():  # type: ignore[no-untyped-def]
    from piper import PiperVoice

    from parley.providers.models import piper_voice

    return PiperVoice.load(str(piper_voice(None)[0]))


def say(text: str, voice: Voice, rate: int = 16000) -> np.ndarray:
    """`text` in `voice`, int16 mono at `rate`, leading and trailing silence trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "say.wav"
        if voice.engine == "espeak":
            subprocess.run(["espeak-ng", "-v", voice.espeak_voice, "-s", str(voice.wpm), "-w", str(path), text],
                           check=True, capture_output=True)
        else:
            from piper import SynthesisConfig

            with wave.open(str(path), "wb") as wav:
                _piper().synthesize_wav(text, wav, syn_config=SynthesisConfig(length_scale=1.0 / voice.piper_speed))
        pcm, source_rate = read_wav(path)
    return trim(resample(pcm, source_rate, rate) if source_rate != rate else pcm)


def trim(pcm: np.ndarray, threshold: int = 200) -> np.ndarray:
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > threshold)[0]
    return pcm[loud[0] : loud[-1] + 1] if len(loud) else pcm


def telephone(pcm: np.ndarray, rate: int = 16000, law: str = "ulaw") -> np.ndarray:
    """Through a phone line: down to 8 kHz, G.711 encode + decode, back to `rate`."""
    from parley.media import g711

    narrow = resample(pcm, rate, 8000)
    if law == "ulaw":
        narrow = g711.ulaw_decode(g711.ulaw_encode(narrow))
    else:
        narrow = g711.alaw_decode(g711.alaw_encode(narrow))
    return resample(narrow, 8000, rate)


_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("-", " "))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) — Levenshtein over words."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)
