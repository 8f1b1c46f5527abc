"""Benchmark server: a SipEndpoint that answers every call and echoes its audio.

At each call's end it folds the call's RTP stats into totals; on SIGINT/SIGTERM it writes
them as JSON to --stats and exits. Run by bench/sip/run.py; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from parley.logging import configure
from parley.sip.call import Call, IncomingCall
from parley.sip.endpoint import SipEndpoint
from parley.sip.guard import SipLimits


async def main(port: int, stats_path: Path, echo: bool) -> None:
    configure(level="WARNING")
    # SIPp is one source at hundreds of calls/s: no per-source limits (issue 18 limits: docs/sip.md)
    ep = SipEndpoint(port=port, transports=("udp",), rtp_port_range=(30000, 60000),
                     limits=SipLimits(requests_per_second=0, invites_per_source=0, invites_total=0))
    totals = {"calls": 0, "active": 0, "max_active": 0, "packets_received": 0, "packets_sent": 0, "lost": 0,
              "late_sends": 0, "max_send_lateness_ms": 0.0, "skipped_ticks": 0, "concealed": 0,
              "max_jitter_ms": 0.0}

    async def media(call: Call) -> None:
        while (frame := await call.rtp.read_frame()) is not None:
            if echo:
                call.rtp.write(frame)

    async def on_incoming(incoming: IncomingCall) -> None:
        call = await incoming.accept()
        totals["calls"] += 1
        totals["active"] += 1
        totals["max_active"] = max(totals["max_active"], totals["active"])
        reader = asyncio.ensure_future(media(call))
        await call.wait_ended()
        s = call.rtp.stats()
        reader.cancel()
        totals["active"] -= 1
        for key in ("packets_received", "packets_sent", "lost", "late_sends", "skipped_ticks", "concealed"):
            totals[key] += getattr(s, key)
        totals["max_send_lateness_ms"] = max(totals["max_send_lateness_ms"], s.max_send_lateness_ms)
        totals["max_jitter_ms"] = max(totals["max_jitter_ms"], s.jitter_ms)

    ep.on_incoming = on_incoming
    await ep.start()
    print(f"listening {ep.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    totals["sip"] = dict(ep.transport.stats)
    stats_path.write_text(json.dumps(totals))
    await ep.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--no-echo", action="store_true")
    a = p.parse_args()
    asyncio.run(main(a.port, a.stats, not a.no_echo))
