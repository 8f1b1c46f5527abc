"""Conversation engine under load, and one conversation with the real offline engines.

    .venv/bin/python -m bench.engine.load [--n 10 50 100 200] [--seconds 20] [--vad energy|silero] [--real]

Load: N simultaneous conversations in one process (one event loop, as a worker runs them), each over a
real-time 8 kHz file channel fed synthetic speech (an espeak-ng question every 3.5 s), with
instant providers (STT answers at once, LLM one chunk, TTS one tone chunk) so what is measured is the
engine itself: from the end-of-turn decision to the first reply frame written to the channel
(`first_frame_out_ms`, p50/p99 over all turns), process CPU per conversation and RSS per conversation.
"loop lag" is how late the event loop wakes a 10 ms sleeper meanwhile: on a machine busy with other
work it shows how much of the latency is waiting for a CPU rather than engine work.

`--real`: one conversation with the shipped receptionist (Whisper base, scripted LLM, piper, silero) on
an espeak-ng question over 8 kHz, in real time: voice-to-voice latency (end of caller speech to first
reply audio) and its parts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import numpy as np

from parley.agents.spec import AgentSpec
from parley.engine.conversation import Conversation
from parley.engine.events import Event, TurnMetrics
from parley.engine.file_channel import FileChannel
from parley.providers.base import LLM, STT, TTS, VAD, LLMChunk, Message, STTStream, ToolDefinition, Transcript

RATE = 8000


# --- instant providers (stand-ins so only the engine is measured) -------------------------------


class InstantSTT(STT):
    name = "instant-stt"
    sample_rate = 16000

    def stream(self, *, language: str | None = None) -> InstantStream:
        return InstantStream()

    async def transcribe(
        self, pcm: np.ndarray, sample_rate: int, *, language: str | None = None
    ) -> Transcript:
        return Transcript("what are your opening hours", True)


class InstantStream(STTStream):
    async def push(self, pcm: np.ndarray) -> None:
        return None

    async def end_utterance(self) -> Transcript:
        return Transcript("what are your opening hours", True)

    async def interim(self) -> AsyncIterator[Transcript]:
        return
        yield

    async def close(self) -> None:
        return None


class InstantLLM(LLM):
    name = "instant-llm"

    async def chat(
        self, messages: list[Message], tools: list[ToolDefinition] | None = None
    ) -> AsyncGenerator[LLMChunk, None]:
        yield LLMChunk(text="We are open from nine to five.")


class InstantTTS(TTS):
    name = "instant-tts"
    sample_rate = 16000
    _audio = (6000 * np.sin(2 * np.pi * 500 * np.arange(16000) / 16000)).astype(np.int16)  # 1 s

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        yield self._audio


class EnergyVAD(VAD):
    name = "energy"
    sample_rate = 8000
    window_samples = 160

    def probability(self, window: np.ndarray) -> float:
        return 1.0 if float(np.abs(window).mean()) > 400 else 0.0

    def reset(self) -> None:
        return None


def utterance() -> np.ndarray:
    """One caller utterance at 8 kHz: espeak-ng speech when available, else a 1.2 s tone."""
    if shutil.which("espeak-ng"):
        from parley.media.resample import resample
        from parley.media.wav import read_wav

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "u.wav"
            subprocess.run(
                ["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(path), "What are your opening hours?"],
                check=True,
            )
            pcm, rate = read_wav(path)
        pcm = resample(pcm, rate, RATE)
        voiced = np.flatnonzero(np.abs(pcm) > 300)
        return pcm[voiced[0] : voiced[-1] + 1]
    return (7000 * np.sin(2 * np.pi * 220 * np.arange(int(1.2 * RATE)) / RATE)).astype(np.int16)


def caller_audio(seconds: float, offset: float, burst: np.ndarray) -> np.ndarray:
    """`burst` every 3.5 s (room for the 1 s reply), starting at `offset`."""
    pcm = np.zeros(int(seconds * RATE), dtype=np.int16)
    t = offset
    length = burst.size / RATE
    while t + length < seconds:
        a = int(t * RATE)
        pcm[a : a + burst.size] = burst
        t += 3.5
    return pcm


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


async def load(n: int, seconds: float, vad_name: str) -> dict[str, float]:
    spec = AgentSpec.model_validate(
        {
            "name": "bench",
            "first_speaker": "caller",
            "turn": {"end_of_turn_silence_ms": 500, "min_speech_ms": 150},
            "idle": {"reminder_after_s": 60},
        }
    )
    rng = random.Random(7)
    marks: list[float] = []

    def sink(event: Event) -> None:
        if isinstance(event, TurnMetrics) and event.first_frame_out_ms is not None:
            marks.append(event.first_frame_out_ms)

    def make_vad():  # type: ignore[no-untyped-def]
        if vad_name == "silero":
            from parley.providers.vad.silero import SileroVAD

            return SileroVAD(8000)
        return EnergyVAD()

    gc.collect()
    rss0 = rss_mb()
    stt, llm, tts = InstantSTT(), InstantLLM(), InstantTTS()
    burst = utterance()
    convs = []
    for _ in range(n):
        channel = FileChannel(
            caller_audio(seconds, rng.uniform(0.2, 3.5), burst), RATE, speed=1.0, tail_s=0.5
        )
        convs.append(Conversation(spec, channel, stt=stt, llm=llm, tts=tts, vad=make_vad(), on_event=sink))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    peak = [rss_mb()]

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(1.0)
            peak[0] = max(peak[0], rss_mb())

    async def start(conversation: Conversation, delay: float) -> None:
        await asyncio.sleep(delay)  # calls start at random moments: their 20 ms frame ticks are not aligned
        await conversation.run()

    lags: list[float] = []

    async def loop_lag() -> None:  # how late the event loop wakes a 10 ms sleeper (machine load shows here)
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000.0)

    sampler = asyncio.ensure_future(sample_rss())
    lagger = asyncio.ensure_future(loop_lag())
    await asyncio.gather(*(start(c, rng.uniform(0, 0.02)) for c in convs))
    sampler.cancel()
    lagger.cancel()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    arr = np.array(marks) if marks else np.array([float("nan")])
    return {
        "n": n,
        "turns": len(marks),
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "lag_p50_ms": float(np.percentile(lags, 50)) if lags else float("nan"),
        "lag_p99_ms": float(np.percentile(lags, 99)) if lags else float("nan"),
        "wall_s": wall,
        "cpu_pct_total": 100.0 * cpu / wall,
        "cpu_pct_per_conv": 100.0 * cpu / wall / n,
        "rss_mb_per_conv": (peak[0] - rss0) / n,
    }


def question_8k() -> tuple[np.ndarray, int]:
    """The caller's question, spoken by espeak-ng and converted to 8 kHz with sox."""
    from parley.media.wav import read_wav

    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        raise SystemExit("espeak-ng and sox are needed for --real")
    with tempfile.TemporaryDirectory() as tmp:
        raw, wav = Path(tmp) / "raw.wav", Path(tmp) / "q8.wav"
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                "en-us",
                "-s",
                "150",
                "-w",
                str(raw),
                "I would like to book an appointment for Tuesday",
            ],
            check=True,
        )
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(wav)], check=True)
        return read_wav(wav)


async def real_conversation() -> None:
    from parley.agents import AgentRegistry
    from parley.engine.session import Engines, talk_file
    from parley.settings import Settings

    root = Path(__file__).resolve().parents[2]
    settings = Settings(
        _env_file=None,
        data_dir=Path(os.environ.get("DATA_DIR", root / "data")),  # type: ignore[call-arg]
        agents_dir=root / "agents",
        prompts_dir=root / "prompts",
    )
    engines = Engines.build(
        AgentRegistry.load(settings.agents_dir, settings.prompts_dir).get("receptionist"), settings
    )
    await engines.warm()
    pcm, rate = await asyncio.to_thread(question_8k)
    for attempt in range(3):
        result = await talk_file(engines, pcm, rate, speed=1.0)
        m = result.metrics[0]
        print(f"real #{attempt + 1}: heard {result.said('user')!r} -> {result.said('agent')!r}")
        print(
            f"  end-of-turn silence {(m.end_of_turn - m.speech_end) * 1000:.0f} ms; after it: "
            f"STT final {m.stt_final_ms:.0f} ms, LLM first token {m.llm_first_token_ms:.0f} ms, "
            f"TTS first audio {m.tts_first_audio_ms:.0f} ms, first frame out {m.first_frame_out_ms:.0f} ms; "
            f"voice-to-voice {m.voice_to_voice_ms:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--vad", choices=["energy", "silero"], default="energy")
    parser.add_argument(
        "--real", action="store_true", help="also one conversation with the real offline engines"
    )
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}, vad: {args.vad}")
    print(
        f"{'N':>4} {'turns':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU %':>6} {'CPU %/conv':>10} "
        f"{'RSS MB/conv':>11} {'loop lag p50/p99 ms':>20}"
    )
    for n in args.n:
        r = asyncio.run(load(n, args.seconds, args.vad))
        print(
            f"{n:>4} {r['turns']:>6} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} "
            f"{r['cpu_pct_total']:>6.1f} {r['cpu_pct_per_conv']:>10.3f} {r['rss_mb_per_conv']:>11.3f} "
            f"{r['lag_p50_ms']:>9.2f}/{r['lag_p99_ms']:<9.2f}"
        )
    print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.real:
        asyncio.run(real_conversation())


if __name__ == "__main__":
    main()
