"""Browser-call benchmark (not a test): real aiortc peers on 127.0.0.1 against the API in its own process.

    PYTHONPATH=src:. .venv/bin/python -m bench.webrtc.run [--clients 10] [--hold 20] [--turns 10] [--skip-real]

(1) CPU per call: the server runs the instant agent (instant STT/LLM/TTS, a real WebRTC VAD: what is
    measured is the WebRTC transport — ICE, DTLS-SRTP, Opus decode/encode, our channel — plus the
    engine's per-frame work and the call records). `--clients` aiortc peers connect; each says an
    espeak-ng question every 3.5 s; the server process's CPU time (/proc) over `--hold` seconds,
    minus its idle CPU, divided by the number of calls. Voice-to-voice seen by the clients (end of the
    question sent → first loud reply frame received) is reported too: it holds the agent's 500 ms
    end-of-turn silence.
(2) Voice-to-voice with the real offline receptionist (Whisper tiny.en, Smart Turn, scripted LLM,
    piper): one client asks `--turns` questions, each after the previous reply was heard; p50/p90 as the
    client hears it, and the server's own `voice_to_voice_ms` marks.
Prints JSON with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.gateway.fakes import write_agent
from parley.media.wav import read_wav
from parley.webrtc.channel import shorten_jitter_buffer
from tests.webrtc.peer import BrowserPeer

ROOT = Path(__file__).resolve().parents[2]
KEY = {"X-API-Key": "bench-key"}
LOUD = 300.0
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def speech(text: str, tmp: Path, engine: str = "espeak") -> np.ndarray:
    raw = tmp / f"{abs(hash(text))}.wav"
    out = tmp / f"{abs(hash(text))}-48k.wav"
    if engine == "piper":
        from tests.conftest import synth_piper

        synth_piper(text, raw)
    else:
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(out)], check=True)
    pcm, _ = read_wav(out)
    return pcm


def trailing_silence_s(pcm: np.ndarray, threshold: float = 500.0) -> float:
    """Seconds after the last 10 ms window of `pcm` louder than `threshold` (TTS files end in silence)."""
    n = 480
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    loud = np.nonzero(np.sqrt((frames ** 2).mean(axis=1)) > threshold)[0]
    return (len(frames) - 1 - int(loud[-1])) * n / 48000 + (len(pcm) % n) / 48000 if loud.size else 0.0


def browser_like_peer() -> BrowserPeer:
    """An aiortc client whose receive buffer holds one frame, as a browser's adaptive one does on loopback
    (aiortc's default holds five: +80-200 ms that no browser adds here)."""
    peer = BrowserPeer()
    for transceiver in peer.pc.getTransceivers():
        shorten_jitter_buffer(transceiver.receiver)
    return peer


def first_loud_after(peer: BrowserPeer, t: float) -> float | None:
    for at, frame in list(peer.heard):
        if at > t and frame.size and float(np.sqrt((frame.astype(np.float64) ** 2).mean())) > LOUD:
            return at
    return None


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def start_server(tmp: Path, agents: list[str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "bench.webrtc.server", str(port), str(tmp / "data"),
                             str(tmp / "agents"), *agents], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=str(tmp))
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    while line and "ready" not in line:
        line = await asyncio.to_thread(proc.stdout.readline)
    if not line:
        raise RuntimeError("the benchmark server did not start")
    return proc, f"http://127.0.0.1:{port}"


async def load(url: str, pid: int, clients: int, hold: float, question: np.ndarray) -> dict[str, Any]:
    idle0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(3)
    idle_pct = (cpu_seconds(pid) - idle0) / (time.monotonic() - t0) * 100
    peers = [browser_like_peer() for _ in range(clients)]
    v2v: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=KEY, timeout=60) as client:
        for peer in peers:
            r = await peer.call(client, agent="bench")
            assert r.status_code == 200, r.text
        await asyncio.sleep(2)  # greetings

        async def talk(peer: BrowserPeer, offset: float) -> None:
            await asyncio.sleep(offset)
            end = time.monotonic() + hold
            while time.monotonic() < end:
                said = peer.mic.say(question) - trailing_silence_s(question)  # the end of the words
                await asyncio.sleep(max(0.0, said - time.monotonic()) + 2.0)
                heard = first_loud_after(peer, said)
                if heard is not None:
                    v2v.append((heard - said) * 1000)
                await asyncio.sleep(0.5)

        c0, w0 = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(talk(p, i * 0.35) for i, p in enumerate(peers)))
        busy_pct = (cpu_seconds(pid) - c0) / (time.monotonic() - w0) * 100
        for peer in peers:
            await client.delete(f"/api/webrtc/calls/{peer.call_id}")
    for peer in peers:
        await peer.close()
    return {"clients": clients, "hold_s": hold, "server_cpu_idle_pct": round(idle_pct, 1),
            "server_cpu_busy_pct": round(busy_pct, 1),
            "cpu_pct_per_call": round((busy_pct - idle_pct) / clients, 2),
            "turns": len(v2v), "client_v2v_ms_p50": pct(v2v, 50), "client_v2v_ms_p90": pct(v2v, 90),
            "note": "instant agent: v2v = 500 ms end-of-turn silence + VAD + transport"}


async def real(url: str, turns: int, questions: list[np.ndarray]) -> dict[str, Any]:
    peer = browser_like_peer()
    v2v: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=KEY, timeout=60) as client:
        r = await peer.call(client, agent="receptionist")
        assert r.status_code == 200, r.text
        call_id = peer.call_id
        deadline = time.monotonic() + 40
        while not peer.transcripts("agent") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for i in range(turns):
            before = len(peer.transcripts("agent"))
            question = questions[i % len(questions)]
            said = peer.mic.say(question) - trailing_silence_s(question)
            deadline = time.monotonic() + 30
            while len(peer.transcripts("agent")) <= before and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            heard = first_loud_after(peer, said)
            if heard is not None:
                v2v.append((heard - said) * 1000)
            await asyncio.sleep(0.5)
        await client.delete(f"/api/webrtc/calls/{call_id}")
        await asyncio.sleep(2)
        detail = (await client.get(f"/api/calls/{call_id}")).json()
    await peer.close()
    marks = [e["data"] for e in detail.get("timeline", []) if e["type"] == "turn_metrics"]
    server_v2v = [m["voice_to_voice_ms"] for m in marks if m.get("voice_to_voice_ms") and m.get("stt_final_ms")]
    return {"turns": len(v2v), "client_v2v_ms_p50": pct(v2v, 50), "client_v2v_ms_p90": pct(v2v, 90),
            "client_v2v_ms": [round(v) for v in v2v],
            "server_v2v_ms_p50": pct(server_v2v, 50), "server_turns": len(server_v2v),
            "stt_final_ms_p50": pct([m["stt_final_ms"] for m in marks if m.get("stt_final_ms")], 50),
            "first_frame_out_ms_p50": pct([m["first_frame_out_ms"] for m in marks
                                           if m.get("first_frame_out_ms") and m.get("stt_final_ms")], 50)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--hold", type=float, default=20.0)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--detector", choices=["smart_turn", "silence"], default="smart_turn",
                    help="the instant agent's end-of-turn detector (silence: transport and engine only)")
    args = ap.parse_args()
    result: dict[str, Any] = {"load_avg_before": os.getloadavg()[0], "cpus": os.cpu_count(),
                              "detector": args.detector}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_agent(tmp / "agents", vad="webrtc", detector=args.detector)
        shutil.copy(ROOT / "agents" / "receptionist.yaml", tmp / "agents" / "receptionist.yaml")
        agents = ["bench"] + ([] if args.skip_real else ["receptionist"])
        proc, url = await start_server(tmp, agents)
        try:
            if not args.skip_load:
                question = speech("What are your opening hours?", tmp)
                result["load"] = await load(url, proc.pid, args.clients, args.hold, question)
            if not args.skip_real:
                qs = [speech(t, tmp, engine="piper") for t in (
                    "What are your opening hours?", "Are you open on Saturday?", "When do you close today?")]
                result["real"] = await real(url, args.turns, qs)
        finally:
            proc.terminate()
            proc.wait(10)
    result["load_avg_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
