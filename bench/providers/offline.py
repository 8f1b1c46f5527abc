"""Speed and accuracy of the offline speech engines on this machine.

    .venv/bin/python bench/providers/offline.py [--repeat 3]

Speech is made with piper and espeak-ng, put through the telephone path (8 kHz, G.711 μ-law when
available) and fed to the engines. RTF = processing time / audio duration (lower is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from parley.media.resample import resample
from parley.media.wav import read_wav
from parley.providers.models import piper_voice
from parley.providers.stt.pocketsphinx import PocketSphinxSTT
from parley.providers.stt.whisper import WhisperSTT
from parley.providers.tts.espeak import EspeakTTS
from parley.providers.tts.piper import PiperTTS
from parley.providers.vad.silero import SileroVAD
from parley.providers.vad.webrtc import WebRtcVAD

SENTENCES = [
    "I would like to book an appointment for Tuesday",
    "What are your opening hours on Saturday?",
    "Can I speak to a person about my bill, please?",
]


def telephone(pcm: np.ndarray, rate: int) -> np.ndarray:
    narrow = resample(pcm, rate, 8000)
    try:
        from parley.media import g711

        narrow = g711.ulaw_decode(g711.ulaw_encode(narrow))
    except ImportError:
        pass
    return resample(narrow, 8000, 16000)


def speech(text: str, engine: str, tmp: Path) -> np.ndarray:
    path = tmp / f"{engine}-{abs(hash(text))}.wav"
    if engine == "espeak":
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    else:
        from piper import PiperVoice

        voice = PiperVoice.load(str(piper_voice(None)[0]))
        with wave.open(str(path), "wb") as w:
            voice.synthesize_wav(text, w)
    pcm, rate = read_wav(path)
    return telephone(pcm, rate)


def wer(ref: str, hyp: str) -> float:
    r = [w.strip(".,?!").lower() for w in ref.split()]
    h = [w.strip(".,?!").lower() for w in hyp.split()]
    d = np.zeros((len(r) + 1, len(h) + 1), dtype=int)
    d[:, 0] = np.arange(len(r) + 1)
    d[0, :] = np.arange(len(h) + 1)
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (r[i - 1] != h[j - 1]))
    return d[len(r), len(h)] / max(1, len(r))


async def bench_stt(tmp: Path, repeat: int) -> None:
    whisper = WhisperSTT(model=None, data_dir=tmp / "data", threads=2)
    t = time.perf_counter()
    await whisper.warm()
    print(f"whisper base: assemble+load {time.perf_counter() - t:.2f} s")
    sphinx = PocketSphinxSTT()
    for engine in ("piper", "espeak"):
        clips = [(s, speech(s, engine, tmp)) for s in SENTENCES]
        for name, stt in (("whisper", whisper), ("pocketsphinx", sphinx)):
            await stt.transcribe(clips[0][1], 16000)  # warm
            spent, cpu, audio, errors = 0.0, 0.0, 0.0, []
            for _ in range(repeat):
                for ref, pcm in clips:
                    t, cpu0 = time.perf_counter(), time.process_time()
                    got = await stt.transcribe(pcm, 16000)
                    spent += time.perf_counter() - t
                    cpu += time.process_time() - cpu0
                    audio += len(pcm) / 16000
                    errors.append(wer(ref, got.text))
            n = repeat * len(clips)
            print(
                f"STT {name:12s} {engine:6s} phone path: RTF {spent / audio:.2f} "
                f"(CPU-s per audio-s {cpu / audio:.2f}), "
                f"{spent / n * 1000:.0f} ms per utterance, WER {np.mean(errors) * 100:.0f} %"
            )


async def bench_turn_latency(tmp: Path, repeat: int) -> None:
    """Caller audio pushed in real time (20 ms frames), then 700 ms of silence (the engine's default
    end-of-turn wait): how long after that does `end_utterance()` return, with and without early decoding?"""
    stt = WhisperSTT(model=None, data_dir=tmp / "data", threads=2)
    await stt.warm()
    clip = speech(SENTENCES[0], "piper", tmp)
    tail = np.zeros(int(0.7 * 16000), np.int16)
    for speculative in (False, True):
        waits = []
        for _ in range(repeat):
            stream = stt.stream()
            audio = np.concatenate([clip, tail])
            snapshot_at = len(clip) + 1600  # the engine asks for a snapshot after 100 ms of silence
            start = time.perf_counter()
            for n, i in enumerate(range(0, len(audio), 320)):
                await stream.push(audio[i : i + 320])
                if speculative and i < snapshot_at <= i + 320:
                    asyncio.ensure_future(stream.snapshot())
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))
            t = time.perf_counter()
            await stream.end_utterance()
            waits.append(time.perf_counter() - t)
            await stream.close()
        print(
            f"whisper end-of-turn → final transcript, speculative={speculative!s:5s}: "
            f"median {np.median(waits) * 1000:.0f} ms"
        )


async def bench_tts(repeat: int) -> None:
    text = "Sure, I can book that for Tuesday. May I have your name, please? Thank you for calling."
    for tts in (PiperTTS(), EspeakTTS()):
        [c async for c in tts.synthesize("Warm up.")]
        spent, cpu, audio, first = 0.0, 0.0, 0.0, []
        for _ in range(repeat):
            t, cpu0 = time.perf_counter(), time.process_time()
            n = 0
            async for chunk in tts.synthesize(text):
                if n == 0:
                    first.append(time.perf_counter() - t)
                n += len(chunk)
            spent += time.perf_counter() - t
            cpu += time.process_time() - cpu0
            audio += n / tts.sample_rate
        print(
            f"TTS {tts.name:7s}: RTF {spent / audio:.3f} (CPU-s per audio-s {cpu / audio:.3f}; espeak-ng's "
            f"own process not counted), first audio after {np.median(first) * 1000:.0f} ms"
        )


def bench_vad(tmp: Path) -> None:
    rng = np.random.default_rng(1)
    talk = np.concatenate([speech(s, "piper", tmp) for s in SENTENCES])
    bursts = np.zeros(16000 * 5, np.int16)
    for s in range(0, len(bursts), 8000):
        bursts[s : s + 3200] = (rng.standard_normal(3200) * 10000).astype(np.int16)
    signals = {
        "speech": talk,
        "silence": np.zeros(16000 * 5, np.int16),
        "hiss": (rng.standard_normal(16000 * 5) * 300).astype(np.int16),
        "loud noise": (rng.standard_normal(16000 * 5) * 8000).astype(np.int16),
        "noise bursts": bursts,
    }
    makers = {
        "silero 16k": lambda: SileroVAD(16000, gate=False),
        "silero 16k+gate": lambda: SileroVAD(16000, gate=True),
        "silero 8k+gate": lambda: SileroVAD(8000, gate=True),
        "webrtc 16k m3": lambda: WebRtcVAD(16000, frame_ms=30, aggressiveness=3),
        "webrtc 8k m3": lambda: WebRtcVAD(8000, frame_ms=20, aggressiveness=3),
    }
    print(f"VAD {'':16s}" + "".join(f"{k:>22s}" for k in signals))
    for label, make in makers.items():
        row = f"VAD {label:16s}"
        for pcm in signals.values():
            vad = make()
            x = pcm if vad.sample_rate == 16000 else resample(pcm, 16000, vad.sample_rate)
            w = vad.window_samples
            t = time.process_time()  # CPU time: stays meaningful when other work shares the machine
            votes = [vad.probability(x[i : i + w]) >= 0.5 for i in range(0, len(x) - w + 1, w)]
            per = (time.process_time() - t) / len(votes)
            row += f"{np.mean(votes) * 100:8.0f} % {per * 1e6:7.1f} µs/w"
        print(row)
    print("    (% = share of 32 ms (silero) / 20–30 ms (webrtc) windows called speech; CPU µs per window)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("espeak-ng"):
        raise SystemExit("espeak-ng is needed (apt-get install espeak-ng)")
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (other work on the machine slows every figure)")
    with tempfile.TemporaryDirectory() as tmp:
        await bench_stt(Path(tmp), args.repeat)
        await bench_turn_latency(Path(tmp), args.repeat)
        await bench_tts(args.repeat)
        bench_vad(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
