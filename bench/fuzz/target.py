"""A bare SipEndpoint to attack (for bench/fuzz): prints its port, answers INVITEs slowly (180, then
486 after `--decide` s, like an application that thinks), and on stdin EOF / SIGTERM prints its
transport stats and peak RSS (VmHWM) as JSON. Uses only the oldest endpoint API, so the same script
measures old code (PYTHONPATH=/work/main/src) and new."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys


def vm(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def main() -> None:
    from parley.sip.endpoint import SipEndpoint

    ap = argparse.ArgumentParser()
    ap.add_argument("--decide", type=float, default=2.0)
    ap.add_argument("--no-rate-limit", action="store_true", help="new code only: SipLimits(requests_per_second=0)")
    args = ap.parse_args()
    kwargs = {}
    if args.no_rate_limit:
        from parley.sip.guard import SipLimits

        kwargs["limits"] = SipLimits(requests_per_second=0)
    ep = SipEndpoint(host="127.0.0.1", port=0, **kwargs)

    async def handler(incoming) -> None:  # type: ignore[no-untyped-def]
        await incoming.ring()
        await asyncio.sleep(args.decide)
        await incoming.reject(486)

    ep.on_incoming = handler
    await ep.start()
    print(json.dumps({"port": ep.port, "rss_start": vm("VmRSS")}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(json.dumps({"stats": ep.transport.stats, "rss_now": vm("VmRSS"), "rss_peak": vm("VmHWM"),
                      "server_transactions": len(ep.transactions.server)}), flush=True)
    sys.stdout.flush()
    await asyncio.wait_for(ep.close(), 10)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
