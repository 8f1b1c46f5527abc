"""The attacks of issue 18 against a bare SipEndpoint (bench/fuzz/target.py in a subprocess), each
while a well-behaved OPTIONS probe (127.0.0.1, every 20 ms) measures the round trip. Not a test.

    python -m bench.fuzz.attacks [--src /work/main/src] [--attacks parse,invite,slowloris]

`--src` picks the code under test (the target runs with PYTHONPATH=<src>), so the same script gives
"before" (main's code) and "after". Prints JSON: OPTIONS p50/p99/max/lost per attack, the target's
peak RSS (VmHWM) and transport counters, and for slowloris how many connections were still open.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.sip.attack import OptionsProbe, request

ROOT = Path(__file__).resolve().parents[2]


class Target:
    def __init__(self, src: str, extra: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=f"{src}:{ROOT}")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fuzz.target", *extra], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                info = json.loads(line)
                self.port = int(info["port"])
                self.rss_start = int(info["rss_start"])
                return
        raise RuntimeError("target did not start")

    def stop(self) -> dict[str, object]:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # its loop is still busy: take what it printed
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in out.splitlines():
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        return {}


def parse_flood(port: int, n: int = 2000) -> dict[str, object]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    src = s.getsockname()[1]
    for i in range(n):
        s.sendto(request("INVITE", port, src_port=src, content_length="²"), ("127.0.0.1", port))
    s.close()
    return {"datagrams": n}


def invite_flood(port: int, n: int = 2000) -> dict[str, object]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(0.0)
    src = s.getsockname()[1]
    codes: dict[str, int] = {}
    for i in range(n):
        s.sendto(request("INVITE", port, src_port=src, call_id=f"flood-{i}-{os.urandom(4).hex()}"), ("127.0.0.1", port))
        if i % 50 == 0:
            time.sleep(0.005)
    deadline = time.monotonic() + 4
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            code = s.recv(65535).split(b" ", 2)[1].decode()
        except (socket.timeout, IndexError):
            continue
        codes[code] = codes.get(code, 0) + 1
    s.close()
    return {"invites": n, "responses": codes}


def slowloris(port: int, n: int = 2000, hold: float = 15.0) -> dict[str, object]:
    socks: list[socket.socket] = []
    refused = 0
    for i in range(n):
        try:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.bind((f"127.0.0.{2 + i % 8}", 0))
            c.settimeout(2)
            c.connect(("127.0.0.1", port))
            c.sendall(b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2;branch=z9hG4bKslow\r\n")
            socks.append(c)
        except OSError:
            refused += 1
    t_end = time.monotonic() + hold
    while time.monotonic() < t_end:  # trickle a byte now and then, as slowloris does
        for c in socks[:: max(1, len(socks) // 50)]:
            try:
                c.send(b"X")
            except OSError:
                pass
        time.sleep(1.0)
    still_open = 0
    for c in socks:
        c.setblocking(False)
        try:
            still_open += 0 if c.recv(1) == b"" else 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        c.close()
    return {"connections": n, "connect_failed": refused, "held_s": hold, "still_open_at_end": still_open}


ATTACKS = {"parse": parse_flood, "invite": invite_flood, "slowloris": slowloris}


def run(src: str, name: str, extra: list[str]) -> dict[str, object]:
    target = Target(src, extra)
    probe = OptionsProbe(target.port)
    probe.start()
    time.sleep(0.5)
    before = len(probe.rtts)
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(ATTACKS[name](target.port)))
    t0 = time.monotonic()
    t.start()
    t.join()
    time.sleep(1.0)
    probe.stop.set()
    probe.join()
    during = sorted(probe.rtts[before:]) or [float("inf")]
    end = target.stop()
    return {
        "attack": name, "attack_seconds": round(time.monotonic() - t0, 1), **box,
        "options_probes": len(during), "options_p50_ms": round(during[len(during) // 2] * 1000, 1),
        "options_p99_ms": round(during[min(len(during) - 1, int(len(during) * 0.99))] * 1000, 1),
        "options_max_ms": round(during[-1] * 1000, 1), "options_lost": sum(1 for x in during if x >= 10),
        "rss_start_mb": round(target.rss_start / 2**20, 1), "rss_peak_mb": round(int(end.get("rss_peak", 0)) / 2**20, 1),
        "rss_end_mb": round(int(end.get("rss_now", 0)) / 2**20, 1), "target": end.get("stats"),
        "server_transactions_at_end": end.get("server_transactions"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=str(ROOT / "src"))
    ap.add_argument("--attacks", default="parse,invite,slowloris")
    ap.add_argument("--no-rate-limit", action="store_true", help="the target runs without the per-source rate limit")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    load = os.getloadavg()
    extra = ["--no-rate-limit"] if args.no_rate_limit else []
    results = [run(args.src, a, extra) for a in args.attacks.split(",")]
    print(json.dumps({"src": args.src, "loadavg_before": [round(x, 2) for x in load], "results": results}, indent=2))


if __name__ == "__main__":
    main()
