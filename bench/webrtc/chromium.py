"""Browser-to-agent voice-to-voice as the page hears it (not a test): Debian's Chromium (Playwright,
never a downloaded browser) with a WAV microphone asking `--turns` questions, against the offline
receptionist served by `bench.webrtc.server` in its own process. The page (tests/webrtc/talk_page.html)
samples the microphone's and the agent's levels with WebAudio every 20 ms; per turn, voice-to-voice =
the end of the caller's speech (last mic level > 0.01) → the first agent level > 0.01 after it. Also
the page's getStats() (Chrome's jitter buffer delay). Prints JSON with the load average.

    PYTHONPATH=src:. .venv/bin/python -m bench.webrtc.chromium [--turns 10] [--gap 4.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.gateway.fakes import write_agent
from bench.webrtc.run import ROOT, pct, speech, start_server
from parley.media.wav import write_wav

PAGE = ROOT / "tests" / "webrtc" / "talk_page.html"
LEVEL = 0.01


def turns_from_levels(levels: np.ndarray, min_gap_ms: float = 600.0) -> list[float]:
    """Voice-to-voice per caller utterance: mic segments split by ≥ `min_gap_ms` of quiet."""
    t, mic, agent = levels[:, 0], levels[:, 1], levels[:, 2]
    on = np.nonzero(mic > LEVEL)[0]
    if not on.size:
        return []
    ends = [on[i] for i in range(len(on)) if i == len(on) - 1 or t[on[i + 1]] - t[on[i]] >= min_gap_ms]
    out = []
    for k, end in enumerate(ends):
        nxt = t[on[np.searchsorted(on, end) + 1]] if end != on[-1] else np.inf
        reply = np.nonzero((agent > LEVEL) & (t > t[end]) & (t < nxt))[0]
        if reply.size:
            out.append(float(t[reply[0]] - t[end]))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--gap", type=float, default=5.0, help="seconds after each question for the reply")
    args = ap.parse_args()
    from playwright.async_api import async_playwright

    result: dict[str, Any] = {"load_avg_before": os.getloadavg()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_agent(tmp / "agents", vad="webrtc")
        shutil.copy(ROOT / "agents" / "receptionist.yaml", tmp / "agents" / "receptionist.yaml")
        question = speech("I want to cancel my appointment.", tmp, engine="piper")
        quiet = lambda s: np.zeros(int(s * 48000), np.int16)  # noqa: E731
        mic = write_wav(tmp / "mic.wav", np.concatenate(
            [quiet(8.0)] + [np.concatenate([question, quiet(args.gap)]) for _ in range(args.turns)] + [quiet(5)]),
            48000)
        seconds = 8.0 + args.turns * (len(question) / 48000 + args.gap) + 3
        proc, url = await start_server(tmp, ["receptionist"])
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={mic}%noloop",
                    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection"])
                page = await browser.new_page()

                async def serve(route: Any) -> None:
                    await route.fulfill(status=200, content_type="text/html", body=PAGE.read_text())

                await page.route(f"{url}/bench/talk", serve)
                await page.goto(f"{url}/bench/talk")
                started = await page.evaluate("k => window.startCall(k)", "bench-key")
                assert started["status"] == 200, started
                await asyncio.sleep(seconds)
                levels = np.array(await page.evaluate("window.levels"))
                stats = await page.evaluate("window.audioStats()")
                messages = await page.evaluate("window.messages")
                await page.evaluate("window.endCall()")
                await browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    v2v = turns_from_levels(levels)
    result.update({
        "turns": len(v2v), "page_v2v_ms_p50": pct(v2v, 50), "page_v2v_ms_p90": pct(v2v, 90),
        "page_v2v_ms": [round(v) for v in v2v], "chrome_inbound_audio": stats,
        "agent_replies_on_page": sum(1 for m in messages if m.get("type") == "transcript" and m["role"] == "agent"),
        "load_avg_after": os.getloadavg()[0],
    })
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
