"""Twilio Media Streams benchmark (not a test): N simultaneous calls over real WebSockets. Prints JSON.

    .venv/bin/python -m bench.twilio.run [--calls 50] [--ramp 5] [--hold 20]

The app (API + Twilio routes + the bench agent: instant STT/LLM/TTS, a real WebRTC VAD — so the transport,
VAD, turn-taking and call records are what is measured, not speech models) runs in its own process under
uvicorn (`bench/twilio/server.py`). This process plays Twilio for N calls (tests/twilio/media_streams.py):
a signed voice webhook, then the WebSocket with 20 ms μ-law media both ways, marks echoed as played. Each
caller waits for the agent to finish, says "what are your opening hours" (espeak-ng), and measures
voice-to-voice: its last loud sample sent (the frame's send time less the file's trailing silence) → the first
agent `media` message received; repeated until
the hold ends, then `stop`.
Reported: the server process's CPU % and RSS growth per call while all N calls are up (/proc), frames the
server sent > 10 ms after their 20 ms slot (its `TwilioChannel.late_frames`, from its "Twilio stream ended" log
lines), reply gaps the client saw (> 60 ms between two media messages inside one reply), voice-to-voice
p50/p90, and the machine's load (loadavg, and all-CPU busy % from /proc/stat) during the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.gateway.speech import espeak_ulaw
from bench.twilio.server import ACCOUNT_SID, AUTH_TOKEN
from parley.media.g711 import ulaw_decode
from parley.telephony.twilio.signature import sign
from tests.twilio.media_streams import MediaStreamsClient, parse_twiml, sid

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def trailing_silence_s(pcm: np.ndarray, threshold: int = 500) -> float:
    """Seconds after the last sample louder than `threshold` (espeak ends its files with silence)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return (pcm.size - int(loud[-1]) - 1) / 8000 if loud.size else 0.0


async def one_call(base: str, http: httpx.AsyncClient, speech: np.ndarray, until: float,
                   v2v: list[float], gaps: list[int]) -> str:
    call_sid = sid("CA")
    form = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "From": "+14155550100", "To": "+15005550006",
            "CallStatus": "ringing", "Direction": "inbound"}
    url = base + "/twilio/voice"
    try:
        r = await http.post(url, data=form, headers={"X-Twilio-Signature": sign(AUTH_TOKEN, url, form)})
        r.raise_for_status()
    except httpx.HTTPError as exc:
        return f"webhook: {type(exc).__name__}: {exc}"
    stream_url, params = parse_twiml(r.text)
    client = MediaStreamsClient(stream_url, params, call_sid=call_sid, account_sid=ACCOUNT_SID)
    await client.open()
    client.start_audio()
    try:
        while time.perf_counter() < until - 4:
            # wait until the agent is quiet (no media for 300 ms), then speak
            while True:
                media = client.received.media
                if media and time.perf_counter() - media[-1][0] > 0.3:
                    break
                await asyncio.sleep(0.05)
            before = len(client.received.media)
            client.say(speech)
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline:
                end = client.speech_end - trailing_silence_s(speech) if client.speech_end is not None else None
                fresh = [t for t, _ in client.received.media[before:] if end is not None and t > end]
                if fresh:
                    v2v.append((fresh[0] - end) * 1000.0)
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.5)  # the reply plays
            reply = [t for t, _ in client.received.media[before:]]
            gaps.append(sum(1 for a, b in zip(reply, reply[1:]) if 0.06 < b - a < 0.3))
        await client.stop()
        await client.wait_closed(10)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - a failed call is a result
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()


async def run(calls: int, ramp: float, hold: float, detector: str = "smart_turn") -> dict[str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-twilio-"))
    log_path = tmp / "server.log"
    profile = os.environ.get("BENCH_PROFILE")  # a path: the server runs under cProfile, stats written there
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    server = subprocess.Popen([sys.executable, *prefix, "-m", "bench.twilio.server", str(port), str(tmp / "data"),
                               detector],
                              cwd=ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    speech_file = espeak_ulaw("what are your opening hours", tmp / "q.ulaw", 0.0, 0.0)
    speech = ulaw_decode(speech_file.read_bytes())
    try:
        async with httpx.AsyncClient(timeout=15) as http:  # Twilio waits 15 s for a webhook
            for _ in range(300):
                try:
                    if (await http.get(base + "/health")).status_code in (200, 503):
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            # one call first: the agent's engines are built and warmed on the first call, not per call
            warm_v2v: list[float] = []
            await one_call(base, http, speech, time.perf_counter() + 6, warm_v2v, [])
            warm_ended = len([1 for line in log_path.read_text().splitlines() if "Twilio stream ended" in line])
            rss0 = rss_mb(server.pid)
            load0 = os.getloadavg()
            start = time.perf_counter()
            until = start + ramp + hold
            v2v: list[float] = []
            gaps: list[int] = []
            tasks = []
            for i in range(calls):
                tasks.append(asyncio.create_task(one_call(base, http, speech, until, v2v, gaps)))
                await asyncio.sleep(ramp / calls)
            await asyncio.sleep(2)  # all up
            cpu_a, busy_a, t_a = cpu_seconds(server.pid), machine_busy(), time.perf_counter()
            peak = rss_mb(server.pid)
            while time.perf_counter() < until - 5:
                await asyncio.sleep(0.5)
                peak = max(peak, rss_mb(server.pid))
            cpu_b, busy_b, t_b = cpu_seconds(server.pid), machine_busy(), time.perf_counter()
            results = await asyncio.gather(*tasks)
            load1 = os.getloadavg()
    finally:
        await asyncio.sleep(1)
        server.send_signal(signal.SIGINT if profile else signal.SIGTERM)  # cProfile writes on SIGINT
        server.wait(20)
    ended = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{") and "Twilio stream ended" in line][warm_ended:]
    window = t_b - t_a
    cpu_pct = (cpu_b - cpu_a) / window * 100
    frames = sum(e.get("frames_out", 0) for e in ended)
    late = sum(e.get("late_frames", 0) for e in ended)
    return {
        "calls": calls, "detector": detector, "ok": sum(r == "ok" for r in results),
        "failures": sorted({r for r in results if r != "ok"})[:5],
        "window_s": round(window, 1),
        "server_cpu_pct": round(cpu_pct, 1), "server_cpu_pct_per_call": round(cpu_pct / calls, 2),
        "server_rss_mb_idle": round(rss0, 1), "server_rss_mb_peak": round(peak, 1),
        "server_rss_mb_per_call": round((peak - rss0) / calls, 2),
        "frames_sent": frames, "late_frames": late,
        "late_frames_pct": round(late / frames * 100, 3) if frames else None,
        "streams_ended_logged": len(ended),
        "client_reply_gaps_over_60ms": sum(gaps), "replies": len(gaps),
        "voice_to_voice_ms": {"n": len(v2v), "p50": pct(v2v, 50), "p90": pct(v2v, 90), "max": pct(v2v, 100)},
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load0],
                    "loadavg_after": [round(x, 2) for x in load1],
                    "all_cpu_busy_pct_in_window": round((busy_b[0] - busy_a[0]) / max(1, busy_b[1] - busy_a[1]) * 100, 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--detector", choices=["smart_turn", "silence"], default="smart_turn",
                        help="the bench agent's end-of-turn detector (silence: transport and engine only)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.calls, args.ramp, args.hold, args.detector)), indent=2))


if __name__ == "__main__":
    main()
