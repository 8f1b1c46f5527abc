"""The benchmark agent: instant STT/LLM/TTS (bench/engine's stand-ins, registered as run-time providers) so
that only the gateway (SIP, RTP, engine, call records) is measured, with a real WebRTC VAD or a cheap
energy VAD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.engine.load import EnergyVAD, InstantLLM, InstantSTT, InstantTTS
from parley.providers.registry import register

AGENT_KEY = "bench"


def register_instant_providers() -> None:
    """Register `instant` STT/LLM/TTS and the `energy` VAD (idempotent)."""
    stt, llm, tts = InstantSTT(), InstantLLM(), InstantTTS()
    register("stt", "instant", lambda spec, *, settings, **_: stt)
    register("llm", "instant", lambda spec, *, settings, **_: llm)
    register("tts", "instant", lambda spec, *, settings, **_: tts)
    register("vad", "energy", lambda spec, *, settings, **_: EnergyVAD())


def write_agent(agents_dir: Path, vad: str = "webrtc", detector: str = "smart_turn") -> Path:
    """An agent YAML using the instant providers: greets first (1 s tone), answers every turn (1 s tone).
    `detector`: the end-of-turn detector (`smart_turn`, the product's default, runs the audio model at each
    turn's end; `silence` measures the transport and engine without it)."""
    vad_line: dict[str, Any] = {"webrtc": "{provider: webrtc, aggressiveness: 2, frame_ms: 20}",
                                "energy": "{provider: energy}",
                                "silero": "{provider: silero, threshold: 0.5}"}
    agents_dir.mkdir(parents=True, exist_ok=True)
    path = agents_dir / f"{AGENT_KEY}.yaml"
    path.write_text(f"""name: "Bench"
language: en
components:
  stt: {{provider: instant}}
  llm: {{provider: instant}}
  tts: {{provider: instant}}
  vad: {vad_line[vad]}
prompts: {{inbound: default_inbound, outbound: default_outbound}}
greeting: {{inbound: "Hello.", outbound: "Hello."}}
first_speaker: agent
allow_interruptions: true
turn: {{detector: {detector}, end_of_turn_silence_ms: 500, min_speech_ms: 150}}
idle: {{reminder_after_s: 60}}
max_duration_s: 900
recording: false
""")
    return path
