"""Fuzz the SIP stack (not a test; the suite runs a small version in tests/sip/test_hardening_fuzz.py).

    PYTHONPATH=src python -m bench.fuzz.run [--parser 1000000] [--live 10000] [--seed 18] [--budget-s 0]

(a) `--parser` mutated messages (RFC 4475 seeds, bench/fuzz/mutate.py) through parse_message +
    validate + the header accessors: any exception but SipParseError is counted and the first few
    are printed with their seed, so they can be replayed.
(b) `--live` mutated messages at a live SipEndpoint in this process, half as UDP datagrams and half
    as TCP frames (one connection each, from 200 loopback addresses); the endpoint's own counters of crashes and handler errors must stay 0, and it must
    still answer OPTIONS at the end. Prints a JSON report with counts and rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import time
import traceback

from bench.fuzz.mutate import mutate
from tests.sip.rfc4475.messages import MESSAGES

SEEDS = [m[2] for m in MESSAGES]


def fuzz_parser(n: int, seed: int, budget_s: float = 0.0) -> dict[str, object]:
    from parley.sip.errors import SipParseError
    from parley.sip.message import parse_message

    rnd = random.Random(seed)
    errors = 0
    rejected = 0
    examples: list[str] = []
    t0 = time.perf_counter()
    done = 0
    for i in range(n):
        if budget_s and i % 1000 == 0 and time.perf_counter() - t0 > budget_s:
            break  # a busy machine: report what ran, and the rate
        done += 1
        case_seed = rnd.getrandbits(32)
        data = mutate(SEEDS[case_seed % len(SEEDS)], random.Random(case_seed))
        try:
            msg = parse_message(data, stream=bool(case_seed & 1))
            msg.validate()
            msg.cseq, msg.from_, msg.to, msg.vias, msg.contact  # noqa: B018 - the accessors must not crash
        except SipParseError:
            rejected += 1
        except Exception:
            errors += 1
            if len(examples) < 5:
                examples.append(f"case seed {case_seed}: {traceback.format_exc(limit=2)}")
    dt = time.perf_counter() - t0
    return {"messages": done, "asked": n, "rejected": rejected, "uncaught_exceptions": errors,
            "seconds": round(dt, 1), "per_second": round(done / dt), "examples": examples}


async def fuzz_live(n: int, seed: int) -> dict[str, object]:
    from parley.sip.endpoint import SipEndpoint
    from parley.sip.guard import SipLimits

    # limits off: every message must reach the parser and handlers
    ep = SipEndpoint(host="127.0.0.1", port=0, limits=SipLimits(requests_per_second=0, invites_per_source=0))

    async def handler(incoming) -> None:  # type: ignore[no-untyped-def]
        await incoming.reject(486)

    ep.on_incoming = handler
    await ep.start()
    rnd = random.Random(seed)
    payloads = [mutate(rnd.choice(SEEDS), rnd) for _ in range(n)]

    def blast() -> dict[str, int]:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.2", 0))
        sent = {"udp": 0, "tcp": 0}
        for i, p in enumerate(payloads[: n // 2]):
            u.sendto(p[:65000], ("127.0.0.1", ep.port))
            sent["udp"] += 1
            if i % 200 == 0:
                time.sleep(0.01)  # let the endpoint drain (the kernel drops what overflows)
        u.close()
        for i, p in enumerate(payloads[n // 2:]):
            try:  # one connection per frame: a bad frame closes its connection, as it should
                with socket.create_connection(("127.0.0.1", ep.port), timeout=5,
                                              source_address=(f"127.0.1.{i % 200 + 1}", 0)) as conn:
                    conn.sendall(p)
                    sent["tcp"] += 1
            except OSError:
                sent["tcp_errors"] = sent.get("tcp_errors", 0) + 1
        return sent

    t0 = time.perf_counter()
    sent = await asyncio.to_thread(blast)
    dt = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(3)
    port = probe.getsockname()[1]
    probe.sendto((f"OPTIONS sip:x@127.0.0.1:{ep.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKend\r\n"
                  f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: end\r\nCSeq: 1 OPTIONS\r\n"
                  f"Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", ep.port))
    alive = await asyncio.to_thread(probe.recv, 65535)
    probe.close()
    stats = dict(ep.transport.stats)
    await ep.close()
    return {"messages": n, "sent": sent, "seconds": round(dt, 1), "per_second": round(n / dt),
            "endpoint": stats, "still_answers_options": alive.startswith(b"SIP/2.0 200")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parser", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--budget-s", type=float, default=0.0, help="stop the parser phase after this long (0: never)")
    args = ap.parse_args()
    from parley.logging import configure

    configure("WARNING")  # the endpoint logs every malformed message it sees (rate-limited) at info
    parser = fuzz_parser(args.parser, args.seed, args.budget_s)
    print(json.dumps({"parser": parser}), flush=True)
    report = {"parser": parser, "live": asyncio.run(fuzz_live(args.live, args.seed))}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
