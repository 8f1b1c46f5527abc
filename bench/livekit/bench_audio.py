"""Cost of the LiveKit room transport's audio adapter on this machine, per 10 ms of audio.

    PYTHONPATH=src .venv/bin/python bench/livekit/bench_audio.py [--seconds 20]

Both directions of one call, with the SDK's own `rtc.AudioFrame`s and no connection:
* in: a 10 ms 48 kHz mono SDK frame (what `AudioStream` yields) → `InboundAudio` → engine frames at the agent
  rate (soxr HQ, windowed one-shot, 5 ms held back);
* out: 10 ms of agent audio → `OutboundAudio` → a 10 ms 48 kHz SDK frame (soxr HQ stream).
Reports µs per 10 ms frame (median of the run), the share of one core one call's adapter takes
(both directions: µs per 10 ms / 10,000 µs), and the machine's load average while it ran.
The SDK's own Opus/WebRTC work (native, in the FFI) is not counted: it needs a connection.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from livekit import rtc

from parley.telephony.livekit.audio import InboundAudio, OutboundAudio


def run(agent_rate: int, seconds: float) -> tuple[float, float]:
    n = int(seconds * 100)
    t48 = np.arange(480 * n) / 48_000
    caller = (6000 * np.sin(2 * np.pi * 300 * t48) + 500 * np.random.default_rng(1).standard_normal(t48.size))
    caller_frames = [rtc.AudioFrame(caller[i * 480 : (i + 1) * 480].astype(np.int16).tobytes(), 48_000, 1, 480)
                     for i in range(n)]
    step = agent_rate // 100
    t = np.arange(step * n) / agent_rate
    agent = (6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    inbound, outbound = InboundAudio(agent_rate), OutboundAudio(agent_rate)
    cost_in, cost_out = [], []
    for i in range(n):
        t0 = time.perf_counter()
        inbound.push(caller_frames[i])
        t1 = time.perf_counter()
        outbound.push(agent[i * step : (i + 1) * step])
        t2 = time.perf_counter()
        cost_in.append(t1 - t0)
        cost_out.append(t2 - t1)
    return statistics.median(cost_in) * 1e6, statistics.median(cost_out) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="Audio per rate and direction.")
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"({os.cpu_count()} cores)")
    print("agent rate | in µs/10 ms | out µs/10 ms | % of one core per call (both directions)")
    for rate in (8000, 16000, 24000):
        us_in, us_out = run(rate, args.seconds)
        print(f"{rate:>10} | {us_in:11.1f} | {us_out:12.1f} | {(us_in + us_out) / 10_000 * 100:.2f} %")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
