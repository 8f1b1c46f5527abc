"""RTP media cost on this machine: per-frame micro costs, and many sessions at once on loopback.

    .venv/bin/python bench/rtp/bench_rtp.py [--pairs 100] [--seconds 10] [--skip-micro]

Micro: microseconds per 20 ms frame for the codecs, RTP serialise/parse and the jitter buffer.
Load: `--pairs` pairs of RtpSessions in ONE process and event loop, each side sending a 1 kHz tone
(one frame written per frame read, as a voice agent would) and reading frames on its own clock.
Reports CPU share of one core, send lateness (max and packets over half a ptime late), receive
loss/concealment/underruns and RSS per session.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import timeit
from collections.abc import Callable

import numpy as np

from parley.media.codecs import get_codec
from parley.sip.jitter import JitterBuffer
from parley.sip.rtp import RtpPacket, parse_rtp
from parley.sip.rtp_session import RtpSession


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def micro() -> None:
    def per_call_us(fn: Callable[[], object], n: int = 20000) -> float:
        return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6

    tone8 = (8000 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.int16)
    tone16 = (8000 * np.sin(2 * np.pi * 1000 * np.arange(320) / 16000)).astype(np.int16)
    print("per 20 ms frame (µs, best of 3):")
    for name, pcm in (("PCMU", tone8), ("PCMA", tone8), ("G722", tone16)):
        codec = get_codec(name)
        payload = codec.encode(pcm)
        print(
            f"  {name:5} encode {per_call_us(lambda c=codec, x=pcm: c.encode(x)):6.2f}"
            f"   decode {per_call_us(lambda c=codec, x=payload: c.decode(x)):6.2f}"
        )
    pkt = RtpPacket(0, 1, 160, 0x1234, get_codec("PCMU").encode(tone8))
    data = pkt.serialize()
    print(
        f"  RTP serialise {per_call_us(pkt.serialize):6.2f}   parse {per_call_us(lambda: parse_rtp(data)):6.2f}"
    )
    pcmu = get_codec("PCMU")
    jb = JitterBuffer(decode=pcmu.decode, frame_samples=160, sample_rate=8000, target_ms=0)
    payload = pcmu.encode(tone8)
    seq = [0]

    def push_and_play() -> None:
        seq[0] += 1
        jb.push(seq[0], payload, 0.0)
        jb.frame(0.0)

    print(f"  jitter buffer push + frame (incl. decode) {per_call_us(push_and_play):6.2f}")


async def load(pairs: int, seconds: float) -> None:
    rss0 = rss_kib()
    sessions: list[RtpSession] = []
    for _ in range(pairs):
        a = RtpSession("127.0.0.1", port_range=(20000, 60000), rtcp_interval=1.0)
        b = RtpSession("127.0.0.1", port_range=(20000, 60000), rtcp_interval=1.0)
        await a.start()
        await b.start()
        a.set_remote("127.0.0.1", b.local_port)
        b.set_remote("127.0.0.1", a.local_port)
        sessions += [a, b]
    frame = (8000 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.int16)
    stop = time.monotonic() + seconds
    quiet_frames = [0]

    async def agent(s: RtpSession) -> None:
        s.write(np.tile(frame, 5))  # 100 ms ahead, like a TTS that stays a little in front
        n = 0
        while time.monotonic() < stop:
            got = await s.read_frame()
            if got is None:
                return
            n += 1
            if n % 50 == 0 and n > 10 and int(np.abs(got).max()) < 4000:  # once a second: is the tone there?
                quiet_frames[0] += 1
            s.write(frame)

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(agent(s) for s in sessions))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    rss1 = rss_kib()
    for s in sessions:
        s.set_direction("recvonly")  # stop sending, then let what is in flight arrive
    await asyncio.sleep(0.5)
    stats = [s.stats() for s in sessions]
    for s in sessions:
        await s.close()
    sent = sum(st.packets_sent for st in stats)
    received = sum(st.packets_received for st in stats)
    print(f"{pairs} pairs = {2 * pairs} sessions for {wall:.1f} s in one process:")
    print(
        f"  CPU {100 * cpu / wall:.0f}% of one core ({1e6 * cpu / max(sent, 1):.0f} µs per packet sent+received+played)"
    )
    print(f"  packets sent {sent}, received {received} ({sent / wall:.0f}/s each way total)")
    print(
        f"  send lateness: max {max(st.max_send_lateness_ms for st in stats):.1f} ms, "
        f"median of per-session max {statistics.median(st.max_send_lateness_ms for st in stats):.1f} ms, "
        f"{sum(st.late_sends for st in stats)} packets > 10 ms late "
        f"({100 * sum(st.late_sends for st in stats) / max(sent, 1):.2f}%), "
        f"skipped ticks {sum(st.skipped_ticks for st in stats)}"
    )
    print(
        f"  receive: lost {sum(st.lost for st in stats)}, concealed {sum(st.concealed for st in stats)}, "
        f"underruns {sum(st.underruns for st in stats)}, late {sum(st.late for st in stats)}, "
        f"jitter median {statistics.median(st.jitter_ms for st in stats):.2f} ms, "
        f"sampled frames without the tone {quiet_frames[0]}"
    )
    print(
        f"  RSS +{(rss1 - rss0) / (2 * pairs):.0f} KiB per session "
        f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-micro", action="store_true")
    args = ap.parse_args()
    if not args.skip_micro:
        micro()
    asyncio.run(load(args.pairs, args.seconds))


if __name__ == "__main__":
    main()
