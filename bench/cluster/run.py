"""Cluster benchmark (not a test): `deploy/cluster.sh` (Kamailio + N workers + API under honcho) on real
PostgreSQL and Redis, instant STT/LLM/TTS with the WebRTC VAD; SIPp calls through Kamailio. Prints JSON.

    PYTHONPATH=src:. .venv/bin/python -m bench.cluster.run --postgres URL --redis URL [--workers 1,2]
        [--calls 100] [--rate 20] [--hold 10]

For each worker count: SIPp places --calls calls at --rate calls/s through Kamailio (all may be up at once),
each holding --hold s (the agent greets with 1 s of tone; the caller sends no audio). Reported: SIPp
successes/failures (with SIPp's last lines and error log when any failed), INVITE→200 OK through Kamailio
(SIPp rtd, p50/p99), CPU seconds of Kamailio, of each worker and of the API over the run (from /proc),
late RTP sends over packets sent and each worker's full garbage collections (count, mean, the bucket the
longest fits under; the workers' /metrics), calls per worker (the call records), the workers' CPU per
call while every call is up (when --hold leaves a window of 2 s or more after the last INVITE), the memory
the calls added per call (peak RSS), and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.gateway.fakes import AGENT_KEY, write_agent
from bench.gateway.run import run_sipp, scenario

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
KEY = {"X-API-Key": "bench"}


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def tree(pid: int) -> list[tuple[int, str]]:
    """`pid` and all its descendants (honcho starts each process in a session of its own) with command lines."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    children: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        if len(row) == 3:
            children.setdefault(int(row[1]), []).append((int(row[0]), row[2]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def role(args: str) -> str:
    if "kamailio" in args and "-f" in args:
        return "kamailio"
    if " worker" in args and "worker-loop" not in args:
        return "worker"
    if " api" in args:
        return "api"
    return "other"


def rss_kb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


async def sample(pids: list[int], t0: float, out: list[tuple[float, float, float]]) -> None:
    """Every 0.5 s: the workers' CPU seconds and resident memory (summed), for `steady`."""
    while True:
        out.append((time.monotonic() - t0, sum(cpu_seconds(p) for p in pids), sum(rss_kb(p) for p in pids)))
        await asyncio.sleep(0.5)


def steady(samples: list[tuple[float, float, float]], args: argparse.Namespace, rss0: float) -> dict[str, Any]:
    """While every call is up (from 1 s after the last INVITE to 1 s before the first BYE): the workers'
    CPU as % of a core per call (media, VAD, timers: no set-ups in that window), and the resident memory
    the calls added, per call (peak over the run minus before it)."""
    ramp = args.calls / args.rate
    window = [(t, c) for t, c, _ in samples if ramp + 1 <= t <= args.hold - 1]
    out: dict[str, Any] = {"rss_kb_per_call": round((max((r for _, _, r in samples), default=rss0) - rss0)
                                                    / args.calls, 1) if samples else None}
    if len(window) >= 3 and window[-1][0] - window[0][0] >= 2:
        (ta, ca), (tb, cb) = window[0], window[-1]
        out["steady_core_percent_per_call"] = round(100 * (cb - ca) / (tb - ta) / args.calls, 3)
        out["steady_window_s"] = round(tb - ta, 1)
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


async def one(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    agents = tmp / f"agents-{workers}"
    write_agent(agents, "webrtc")
    sip_port, api_port = _free(), _free()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": f"{Path(sys.executable).parent}:/usr/sbin:"
           + os.environ.get("PATH", ""), "PARLEY": f"{sys.executable} -m bench.cluster.parley_instant",
           "SIP_PORT": str(sip_port), "API_PORT": str(api_port), "NUM_WORKERS": str(workers),
           "DATABASE_URL": args.postgres, "REDIS_URL": args.redis, "REDIS_PREFIX": prefix, "API_KEYS": "bench",
           "DATA_DIR": str(tmp / f"data-{workers}"), "AGENTS_DIR": str(agents), "PROMPTS_DIR": str(ROOT / "prompts"),
           "DEFAULT_AGENT": AGENT_KEY, "NUM_AGENTS": str(args.calls), "LOG_LEVEL": "WARNING",
           "KAMAILIO_SHM_MB": "256"}
    log = (tmp / f"cluster-{workers}.log").open("wb")
    proc = subprocess.Popen(["bash", str(ROOT / "deploy" / "cluster.sh")], env=env, cwd=tmp, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{api_port}"
    try:
        async with httpx.AsyncClient(base_url=api, headers=KEY, timeout=10) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    body = (await client.get("/health")).json()
                    if len([w for w in body.get("workers", []) if w["state"] == "running"]) == workers:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("cluster did not come up; see " + log.name)
                await asyncio.sleep(0.5)
            # the sync writes the list, Kamailio loads it and probes the workers: calls placed before every
            # worker is an active destination would be answered 503 by Kamailio ("no destination sets")
            await kamailio_routes_to(workers, tmp / f"data-{workers}" / "cluster" / "kamailio_ctl", proc)
            procs = [(pid, role(a)) for pid, a in tree(proc.pid)]
            cpu0 = {pid: cpu_seconds(pid) for pid, _ in procs}
            load0 = os.getloadavg()
            scn = scenario(tmp, f"bench-{workers}", args.hold * 1000, None, False, True)
            from datetime import UTC, datetime
            started_iso = datetime.now(UTC).isoformat()
            t0 = time.monotonic()
            worker_pids = [pid for pid, r in procs if r == "worker"]
            rss0 = sum(rss_kb(pid) for pid in worker_pids)
            samples: list[tuple[float, float, float]] = []  # (s since start, workers' CPU s, workers' RSS kB)
            sampler = asyncio.ensure_future(sample(worker_pids, t0, samples))
            try:
                sipp = await run_sipp(scn, f"127.0.0.1:{sip_port}", tmp, rate=args.rate, calls=args.calls,
                                      limit=args.calls, timeout=int(args.calls / args.rate + args.hold + 60))
            finally:
                sampler.cancel()
            wall = time.monotonic() - t0
            cpu = {}
            for pid, r in procs:
                cpu.setdefault(r, []).append(round(cpu_seconds(pid) - cpu0.get(pid, 0.0), 2))
            body = (await client.get("/health")).json()
            late = sent = 0.0
            gc_full: list[dict[str, float | None]] = []
            for w in body.get("workers", []):
                text = httpx.get(w["health_url"].replace("/health", "/metrics"), timeout=5).text
                for line in text.splitlines():
                    if line.startswith("parley_rtp_late_sends_total "):
                        late += float(line.split()[1])
                    if line.startswith("parley_rtp_packets_sent_total "):
                        sent += float(line.split()[1])
                gc_full.append(full_collections(text))
            calls = [c for c in (await client.get("/api/calls?limit=500")).json()["calls"]
                     if c["created_at"] >= started_iso]
        per_worker: dict[str, int] = {}
        for c in calls:
            per_worker[c["worker"]] = per_worker.get(c["worker"], 0) + 1
        return {"workers": workers, "calls": args.calls, "rate": args.rate, "hold_s": args.hold,
                "sipp_successful": sipp.successful, "sipp_failed": sipp.failed, "wall_s": round(wall, 1),
                "invite_to_200_ms": {"p50": pct(sipp.rtts_ms, 0.5), "p99": pct(sipp.rtts_ms, 0.99),
                                     "n": len(sipp.rtts_ms)},
                "cpu_s": {r: v for r, v in cpu.items() if r != "other"},
                "late_sends_percent": round(100 * late / sent, 3) if sent else None, "packets_sent": int(sent),
                "calls_per_worker": sorted(per_worker.values()), "gc_full_collections_per_worker": gc_full,
                **steady(samples, args, rss0),
                "statuses": sorted({c["status"] for c in calls}),
                # why calls failed (SIPp's last lines and its error log): its work folder is removed after the run
                "sipp_tail": sipp.out[-1500:] if sipp.failed or sipp.code else "",
                "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def full_collections(metrics: str) -> dict[str, float | None]:
    """A worker's full garbage collections since it started (its start-up collection included), from its
    /metrics: how many, their mean, and the bucket bound the longest fits under (ms)."""
    gen2 = [line for line in metrics.splitlines() if 'generation="2"' in line]
    value = {line.split("{")[0]: float(line.split()[-1]) for line in gen2 if "_bucket" not in line}
    count = value.get("parley_gc_pause_seconds_count", 0.0)
    longest = None
    for line in gen2:
        if "_bucket" in line and float(line.split()[-1]) >= count > 0:
            bound = line.split('le="')[1].split('"')[0]
            longest = None if bound == "+Inf" else float(bound) * 1000
            break
    mean = value.get("parley_gc_pause_seconds_sum", 0.0) * 1000 / count if count else None
    return {"count": count, "mean_ms": None if mean is None else round(mean, 1), "longest_under_ms": longest}


async def kamailio_routes_to(workers: int, ctl: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Wait until Kamailio's dispatcher (`kamcmd dispatcher.list`) has `workers` destinations, all active."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(["kamcmd", "-s", f"unix:{ctl}", "dispatcher.list"], capture_output=True,
                             text=True).stdout
        flags = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("FLAGS:")]
        if len(flags) == workers and all(f.startswith("A") for f in flags):
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"Kamailio does not route to {workers} worker(s): {out[-500:]}")
        await asyncio.sleep(0.2)


def _free() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--hold", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-cluster-bench-") as d:
        results = [await one(int(n), args, Path(d)) for n in args.workers.split(",")]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
