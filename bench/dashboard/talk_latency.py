"""Browser-to-agent voice-to-voice latency measured in the page (not a test). Prints JSON.

    PYTHONPATH=src .venv/bin/python -m bench.dashboard.talk_latency [--turns 10] [--gap 6]

Real Chromium (Debian's /usr/bin/chromium via Playwright) signs in to the dashboard, opens the talk page of
the shipped `receptionist` (Whisper + scripted + piper) and presses "Start call". Its microphone is a WAV
file: silence while the agent greets, then `--turns` times a piper question followed by `--gap` seconds of
silence. The page's own meter (WebAudio level meters on the microphone and on the agent's remote track,
`pages/talk.js` `ReplyMeter`) records, per turn, the time from the end of the browser's voice to the first
audio of the reply heard in the page; this script reads those values, and the server's per-turn
`voice_to_voice_ms` marks of the same call for comparison, and reports p50/p90 with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import synth_piper  # noqa: E402
from tests.dashboard.conftest import CHROMIUM, sign_in, start_server, stop_server  # noqa: E402

QUESTION = "I need to cancel my appointment."
GREETING_S = 7.0


def _speech(folder: Path, turns: int, gap_s: float) -> Path:
    raw = synth_piper(QUESTION, folder / "q.wav")
    one = folder / "q48.wav"
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(one), "pad", "0", str(gap_s)],
                   check=True)
    lead = folder / "lead.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", str(lead), "trim", "0", str(GREETING_S)],
                   check=True)
    out = folder / "mic.wav"
    subprocess.run(["sox", str(lead), *([str(one)] * turns), str(out)], check=True)
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--gap", type=float, default=6.0, help="silence after each question (s)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="parley-talk-bench-"))
    mic = _speech(folder, args.turns, args.gap)
    server = start_server(folder)
    load_before = os.getloadavg()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                      "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
                      "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}%noloop",
                      "--autoplay-policy=no-user-gesture-required"])
            page = browser.new_context(permissions=["microphone"]).new_page()
            sign_in(page, server.url, next_path="/ui/talk/receptionist")
            page.get_by_role("button", name="Start call").click()
            deadline = time.monotonic() + GREETING_S + args.turns * (args.gap + 4) + 30
            delays: list[float] = []
            while time.monotonic() < deadline and len(delays) < args.turns:
                raw = page.locator("#reply-delays").get_attribute("data-delays") or ""
                delays = [float(v) for v in raw.split(",") if v]
                time.sleep(0.5)
            call_id = page.locator("#live-transcript").get_attribute("data-call-id")
            page.get_by_role("button", name="End call").click()
            time.sleep(2)
            browser.close()
        detail = server.run(server.state.calls.get(call_id)) if call_id else None
        marks = [e.data.get("voice_to_voice_ms") for e in (detail.timeline if detail else [])
                 if e.type == "turn_metrics"]
        server_v2v = [float(m) for m in marks if m is not None]
        print(json.dumps({
            "what": "browser voice-to-voice: end of the page's microphone voice -> first reply audio in the page",
            "turns_measured": len(delays), "page_ms": delays,
            "page_p50_ms": _pct(delays, 0.5), "page_p90_ms": _pct(delays, 0.9),
            "page_mean_ms": round(statistics.fmean(delays), 1) if delays else None,
            "server_voice_to_voice_ms": server_v2v, "server_p50_ms": _pct(server_v2v, 0.5),
            "call_id": call_id, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "cpus": os.cpu_count(),
        }, indent=2))
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
