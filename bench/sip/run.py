"""SIP load benchmark with SIPp (not a test): call attempts per second, and simultaneous calls
with RTP both ways. Prints a JSON report.

    .venv/bin/python -m bench.sip.run [--rates 50,100,150,200] [--calls 200] [--hold 12]

(a) For each rate, SIPp's built-in `uac` places rate*8 calls (INVITE, ACK, 1 s, BYE) against
    bench/sip/server.py (every call gets a real RtpSession sending silence; no echo loop);
    a rate passes when SIPp reports 0 failed calls.
(b) SIPp places --calls calls that each stream a looped μ-law tone (rtp_stream) for --hold
    seconds while the server echoes every frame back; we read the server's RTP totals (loss,
    send lateness) and sample its CPU and RSS while all calls are up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parley.media.g711 import ulaw_encode

HERE = Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


async def start_server(port: int, stats: Path, echo: bool = True) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "server.py"), "--port", str(port), "--stats", str(stats),
        *([] if echo else ["--no-echo"]),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc


async def stop_server(proc: asyncio.subprocess.Process, stats: Path) -> dict:
    proc.send_signal(2)
    await asyncio.wait_for(proc.wait(), 30)
    return json.loads(stats.read_text())


async def sipp(args: list[str], timeout: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "timeout", "-k", "3", str(timeout), "sipp", *args, "-i", "127.0.0.1", "-mi", "127.0.0.1",
        "-p", str(free_port()), "-mp", str(free_port() & ~1), "-nostdin",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def cumulative(out: str, name: str) -> int:
    m = re.findall(rf"{name}\s+\|\s+\d+\s+\|\s+(\d+)", out)
    return int(m[-1]) if m else -1


async def call_rate(rates: list[int], tmp: Path) -> list[dict]:
    results = []
    for rate in rates:
        port = free_port()
        stats = tmp / f"rate-{rate}.json"
        server = await start_server(port, stats, echo=False)
        calls = rate * 8
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        code, out = await sipp(["-sn", "uac", f"127.0.0.1:{port}", "-r", str(rate), "-m", str(calls), "-d", "1000",
                                "-l", str(rate * 4), "-timeout", "60s"], 70)
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
        rss = rss_mb(server.pid)
        totals = await stop_server(server, stats)
        results.append({
            "rate_cps": rate, "calls": calls, "successful": cumulative(out, "Successful call"),
            "failed": cumulative(out, "Failed call"), "sipp_exit": code, "server_answered": totals["calls"],
            "server_cpu_percent": round(cpu * 100, 1), "server_rss_mb": round(rss, 1),
            "server_max_active": totals["max_active"], "sip_datagrams_received": totals["sip"]["received"],
        })
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="rtp load">
  <send retrans="500">
    <![CDATA[

      INVITE sip:load@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:load@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:load@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:load@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:load@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:load@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      <exec rtp_stream="{ulaw},-1,0"/>
    </action>
  </nop>
  <pause milliseconds="{hold_ms}"/>
  <nop>
    <action>
      <exec rtp_stream="pause"/>
    </action>
  </nop>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:load@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:load@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


async def concurrent(calls: int, hold: float, tmp: Path) -> dict:
    t = np.arange(8000) / 8000
    ulaw = tmp / "tone.ulaw"
    ulaw.write_bytes(ulaw_encode((6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)))
    scenario = tmp / "rtp_load.xml"
    scenario.write_text(SCENARIO.replace("{ulaw}", str(ulaw)).replace("{hold_ms}", str(int(hold * 1000))))
    port = free_port()
    stats = tmp / "concurrent.json"
    server = await start_server(port, stats)
    rss_idle = rss_mb(server.pid)
    rate = 40
    ramp = calls / rate
    run = asyncio.ensure_future(sipp(["-sf", str(scenario), f"127.0.0.1:{port}", "-r", str(rate), "-m", str(calls),
                                      "-l", str(calls), "-timeout", f"{int(ramp + hold + 30)}s",
                                      "-rtp_threadtasks", "50"], int(ramp + hold + 40)))
    await asyncio.sleep(ramp + 1.0)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    window = max(2.0, hold - 3.0)
    await asyncio.sleep(window)
    cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
    rss_peak = rss_mb(server.pid)
    code, out = await run
    totals = await stop_server(server, stats)
    received = totals["packets_received"]
    lost = totals["lost"]
    return {
        "calls": calls, "hold_s": hold, "successful": cumulative(out, "Successful call"),
        "failed": cumulative(out, "Failed call"), "sipp_exit": code, "server_max_active": totals["max_active"],
        "rtp_packets_received": received, "rtp_packets_sent": totals["packets_sent"],
        "received_loss_percent": round(100 * lost / max(1, received + lost), 3),
        "late_sends": totals["late_sends"], "late_sends_percent": round(100 * totals["late_sends"] / max(1, totals["packets_sent"]), 3),
        "max_send_lateness_ms": round(totals["max_send_lateness_ms"], 1), "skipped_ticks": totals["skipped_ticks"],
        "max_jitter_ms": round(totals["max_jitter_ms"], 1),
        "server_cpu_percent_all_up": round(cpu * 100, 1),
        "cpu_percent_per_call": round(cpu * 100 / calls, 3),
        "rss_idle_mb": round(rss_idle, 1), "rss_peak_mb": round(rss_peak, 1),
        "rss_per_call_kb": round((rss_peak - rss_idle) * 1024 / calls, 1),
    }


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rates", default="50,100,150,200")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--hold", type=float, default=12.0)
    p.add_argument("--skip-rate", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        report: dict = {"machine_cores": os.cpu_count()}
        if not a.skip_rate:
            report["call_rate"] = await call_rate([int(r) for r in a.rates.split(",")], tmp)
            passing = [r["rate_cps"] for r in report["call_rate"] if r["failed"] == 0 and r["sipp_exit"] == 0]
            report["max_rate_with_0_failures"] = max(passing) if passing else 0
        report["concurrent_rtp"] = await concurrent(a.calls, a.hold, tmp)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
