"""Telephony gateway benchmark (not a test): real SIP/RTP on 127.0.0.1, SIPp as the callers. Prints JSON.

    .venv/bin/python -m bench.gateway.run [--calls 50,100,200] [--rate 20] [--hold 15] [--vad webrtc|energy|silero]
        [--detector smart_turn|silence] [--setup-calls 200] [--setup-rate 10] [--uac-calls 50] [--real 3] [--skip-load] [--postgres URL] [--pool-trace]
        [--keep-heap]

(1) Load: for each N, SIPp places N calls at --rate calls/s (`-l N`), each streaming a looped μ-law
    utterance (espeak-ng "what are your opening hours", 1.5 s of silence before, 2.5 s after) for
    ramp + --hold seconds while the gateway's agent (instant STT/LLM/TTS, a real WebRTC VAD) greets and
    answers every turn with 1 s of tone. The gateway runs in this process (one event loop, as `parley up`):
    while all N calls are up, CPU % and RSS of this process and event-loop lag are sampled; at each call's
    end its `RtpSession.stats()` is folded in (late sends, max send lateness, skipped ticks, packets lost,
    concealed); afterwards SIPp's failed calls, calls left live in the gateway, call records not
    `completed`, and the engine's reply latency (TurnMetrics.first_frame_out_ms) and end-of-turn wait
    (silence_waited_ms, how each turn ended) are reported, with the garbage collector's pauses per
    generation (count, total, longest: a full collection holds every call's audio). The start-up heap is
    frozen as `parley up` does (`--keep-heap`: not, to measure what that saves).
(2) Setup time INVITE → 200 OK: SIPp's response-time measure (`start_rtd` on the INVITE, `rtd` on the
    200, `-trace_rtt -rtt_freq 1`: one value per call) for every call of (1), and for --setup-calls short
    calls at --setup-rate calls/s (no other load), and --uac-calls calls placed one after another by our own
    SipEndpoint (invite() → answered(), perf_counter). p50/p99. Every calls-store operation is timed too.
(3) --real K: K calls to the shipped `receptionist` (Whisper base + scripted + piper, Silero VAD): SIPp
    plays a piper utterance after the greeting; an AF_PACKET capture on `lo` (root) timestamps every RTP
    packet both ways; caller's end of speech = the last caller packet with speech energy, reply = the first
    gateway packet after it that is not silence / that has speech energy. With the turn's TurnMetrics.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.gateway.fakes import AGENT_KEY, register_instant_providers, write_agent
from bench.gateway.speech import espeak_ulaw, piper_ulaw
from parley.agents import AgentRegistry
from parley.calls.service import CallsService
from parley.calls.states import TERMINAL
from parley.logging import configure
from parley.media.g711 import ulaw_decode
from parley.settings import Settings
from parley.sip.endpoint import SipEndpoint
from parley.support.heap import freeze_startup_heap
from parley.telephony.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
RTP_FIELDS = ("packets_sent", "packets_received", "lost", "late_sends", "skipped_ticks", "concealed", "late",
              "underruns", "overflow_dropped")


# --- small helpers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int | str = "self") -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


def schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of this process's main (event-loop) thread."""
    run_ns, wait_ns, _ = Path(f"/proc/self/task/{os.getpid()}/schedstat").read_text().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def cumulative(out: str, name: str) -> int:
    m = re.findall(rf"{name}\s+\|\s+\d+\s+\|\s+(\d+)", out)
    return int(m[-1]) if m else -1


SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="gateway bench">
  <send retrans="500" start_rtd="1">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:4711@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:4711@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio {media_port} RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="1" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Bench" <sip:4711@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{media}
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Bench" <sip:4711@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def scenario(tmp: Path, name: str, hold_ms: int, ulaw: Path | None, loop: bool, auto_media_port: bool) -> Path:
    media = ""
    if ulaw is not None:
        media = f'  <nop>\n    <action>\n      <exec rtp_stream="{ulaw},{-1 if loop else 1},0"/>\n    </action>\n  </nop>'
    text = (SCENARIO.replace("{media}", media).replace("{hold_ms}", str(hold_ms))
            .replace("{media_port}", "[auto_media_port]" if auto_media_port else "[media_port]"))
    path = tmp / f"{name}.xml"
    path.write_text(text)
    return path


@dataclass
class SippRun:
    code: int
    out: str
    rtts_ms: list[float]

    @property
    def successful(self) -> int:
        return cumulative(self.out, "Successful call")

    @property
    def failed(self) -> int:
        return cumulative(self.out, "Failed call")


async def run_sipp(scn: Path, target: str, tmp: Path, *, rate: float, calls: int, limit: int, timeout: int,
                   media_port: int | None = None, extra: list[str] | None = None) -> SippRun:
    """Run SIPp under `timeout`; collect one INVITE→200 time per call from its rtt trace."""
    work = tmp / f"sipp-{scn.stem}-{time.monotonic_ns()}"
    work.mkdir()
    args = ["timeout", "-k", "3", str(timeout), "sipp", "-sf", str(scn), target, "-i", "127.0.0.1",
            "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(media_port or (free_port() & ~1)),
            "-s", "+4930123456", "-r", str(rate), "-m", str(calls), "-l", str(limit), "-nostdin",
            "-timeout", f"{timeout - 5}s", "-trace_rtt", "-rtt_freq", "1", "-trace_err",
            "-rtp_threadtasks", "50", *(extra or [])]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, cwd=str(work))
    out, _ = await proc.communicate()
    rtts: list[float] = []
    for csv in work.glob("*_rtt.csv"):
        for line in csv.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    rtts.append(float(parts[1]))
                except ValueError:
                    pass
    errors = "".join(p.read_text(errors="replace")[-2000:] for p in work.glob("*_errors.log"))
    return SippRun(proc.returncode or 0, out.decode(errors="replace") + errors, rtts)


# --- the gateway under test -----------------------------------------------------------------------

@dataclass
class Stack:
    settings: Settings
    calls: CallsService
    gateway: Gateway
    rtp: list[dict[str, Any]] = field(default_factory=list)
    store_ops: list[tuple[str, float]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    max_live: int = 0
    max_db_checked_out: int = 0
    _watch: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, tmp: Path, agents_dir: Path, default_agent: str, num_agents: int) -> Stack:
        settings = Settings(_env_file=None, data_dir=tmp, agents_dir=agents_dir,  # type: ignore[call-arg]
                            prompts_dir=ROOT / "prompts", default_agent=default_agent, num_agents=num_agents,
                            sip_transport="udp", redis_url="", database_url=await DATABASE.url())
        agents = AgentRegistry.load(agents_dir, settings.prompts_dir)
        calls = await CallsService.open(settings, agents=agents)
        store_ops = time_store(calls.store)
        endpoint = SipEndpoint(host="127.0.0.1", port=0, transports=("udp",), rtp_port_range=(20000, 40000))
        gateway = Gateway(settings, agents, calls, endpoint=endpoint)
        await gateway.warm()
        await gateway.start()
        if FREEZE_HEAP:
            freeze_startup_heap()  # as `parley up` and `parley worker` do once started
        stack = cls(settings, calls, gateway, store_ops=store_ops)
        stack._watch = asyncio.ensure_future(stack._watch_calls())
        return stack

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.endpoint.port}"

    async def _watch_calls(self) -> None:
        """Fold every answered call's RTP stats in when it ends (polls the gateway's live calls); note the
        database pool's peak checkout (and print its status every 2 s with `--pool-trace`)."""
        pool = self.calls.store.engine.pool
        last_trace = 0.0
        while True:
            self.max_live = max(self.max_live, len(self.gateway.live))
            checked_out = getattr(pool, "checkedout", lambda: 0)()
            self.max_db_checked_out = max(self.max_db_checked_out, checked_out)
            if POOL_TRACE and time.monotonic() - last_trace > 2:
                last_trace = time.monotonic()
                print(f"pool {time.strftime('%H:%M:%S')} live={len(self.gateway.live)} {pool.status()}",
                      file=sys.stderr, flush=True)
            for live in list(self.gateway.live.values()):
                if live.sip is not None and live.record_id not in self.seen:
                    self.seen.add(live.record_id)
                    asyncio.ensure_future(self._on_end(live.record_id, live.sip))
            await asyncio.sleep(0.05)

    async def _on_end(self, record_id: str, sip: Any) -> None:
        await sip.wait_ended()
        s = sip.rtp.stats()
        self.rtp.append({"id": record_id, **{k: getattr(s, k) for k in RTP_FIELDS},
                         "max_send_lateness_ms": s.max_send_lateness_ms, "jitter_ms": s.jitter_ms})

    def stuck_report(self, limit: int = 3) -> dict[str, Any]:
        """What the calls still live in the gateway are doing: SIP state and where their task waits."""
        lives = list(self.gateway.live.values())
        stacks = []
        for live in lives[:limit]:
            task = live.task
            chain = await_chain(task.get_coro()) if task is not None and not task.done() else []
            stacks.append({"record": live.record_id, "sip_ended": live.sip.ended if live.sip else None,
                           "sip_end_reason": live.sip.end_reason if live.sip else None, "task_waits_in": chain})
        return {"live": len(lives), "sip_ended": sum(1 for lc in lives if lc.sip is not None and lc.sip.ended),
                "no_sip_yet": sum(1 for lc in lives if lc.sip is None), "examples": stacks}

    async def wait_idle(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.gateway.live and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return len(self.gateway.live)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.gateway.close()
        await self.calls.close()


class Database:
    """SQLite in the data dir (default), or `--postgres URL`: a fresh schema per stack, dropped at exit."""

    def __init__(self) -> None:
        self.postgres: str | None = None
        self.schemas: list[str] = []

    async def url(self) -> str:
        if not self.postgres:
            return ""
        import asyncpg  # type: ignore[import-untyped,unused-ignore]

        schema = f"bench_gw_{os.getpid()}_{len(self.schemas)}"
        conn = await asyncpg.connect(self.postgres.replace("postgresql+asyncpg://", "postgres://"))
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()
        self.schemas.append(schema)
        return f"{self.postgres}?options=-csearch_path%3D{schema}"

    async def drop(self) -> None:
        if not self.postgres or not self.schemas:
            return
        import asyncpg  # type: ignore[import-untyped,unused-ignore]

        conn = await asyncpg.connect(self.postgres.replace("postgresql+asyncpg://", "postgres://"))
        try:
            for schema in self.schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


DATABASE = Database()
POOL_TRACE = False
FREEZE_HEAP = True


def time_store(store: Any) -> list[tuple[str, float]]:
    """Time every call of the calls store's public coroutine methods (name, ms): measurement only."""
    ops: list[tuple[str, float]] = []
    for name in dir(type(store)):
        method = getattr(store, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(method):
            continue

        def timed(method: Any = method, name: str = name) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await method(*args, **kwargs)
                finally:
                    ops.append((name, (time.perf_counter() - t) * 1000))
            return call

        setattr(store, name, timed())
    joint_write = store.bursts._write  # several calls' bursts of transcripts and events: one transaction

    async def timed_joint_write(items: Any) -> None:
        t = time.perf_counter()
        try:
            await joint_write(items)
        finally:
            ops.append((JOINT_WRITE, (time.perf_counter() - t) * 1000))

    store.bursts._write = timed_joint_write
    return ops


JOINT_WRITE = "(joint write of bursts)"
BURST_METHODS = {"add_batch", "add_event", "add_transcript"}  # their writes are the joint writes


def await_chain(coro: Any) -> list[str]:
    """file:line function of every coroutine a suspended task is awaiting through, outermost first."""
    out: list[str] = []
    while coro is not None and len(out) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            out.append(type(coro).__name__)
            break
        out.append(f"{frame.f_code.co_filename.split('/site-packages/')[-1].split('/src/')[-1]}:{frame.f_lineno} "
                   f"{frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return out


def store_summary(ops: list[tuple[str, float]], seconds: float, calls: int) -> dict[str, Any]:
    """Calls-store (database) operations: count per call, latency, and how long the one before the answer took;
    transactions: the operations, with the bursts of transcripts and events counted by the joint writes
    that stored them (`Store.bursts`) instead of one each."""
    transactions = sum(1 for name, _ in ops if name not in BURST_METHODS)
    ops = [(name, ms) for name, ms in ops if name != JOINT_WRITE]
    all_ms = [ms for _, ms in ops]
    add = [ms for name, ms in ops if name == "add_call"]
    return {"db_ops": len(ops), "db_ops_per_call": round(len(ops) / max(1, calls), 1),
            "db_ops_per_s": round(len(ops) / max(seconds, 0.001), 1),
            "db_transactions": transactions, "db_transactions_per_call": round(transactions / max(1, calls), 1),
            "db_op_ms_p50": pct(all_ms, 50), "db_op_ms_p99": pct(all_ms, 99),
            "db_add_call_ms_p50": pct(add, 50), "db_add_call_ms_p99": pct(add, 99),
            "db_ops_by_name": {name: sum(1 for n, _ in ops if n == name) for name in sorted({n for n, _ in ops})}}


class LogTally(logging.Handler):
    """Counts WARNING+ log lines of the gateway by message, keeping one full example of each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, dict) else {"event": record.getMessage()}
        key = f"{record.levelname} {msg.get('event', '')}"[:160]
        self.counts[key] = self.counts.get(key, 0) + 1
        if key not in self.examples:
            example = dict(msg)
            if record.exc_info:
                example["exc"] = "".join(traceback.format_exception(*record.exc_info))[-1500:]
            self.examples[key] = str(example)[:2000]

    def take(self) -> dict[str, Any]:
        out = {"counts": dict(self.counts), "examples": dict(self.examples)}
        self.counts.clear()
        self.examples.clear()
        return out


TALLY = LogTally()


class GcPauses:
    """The garbage collector's pauses in this process (they stop the event loop), per generation."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._t) * 1000)

    def mark(self) -> list[int]:
        return [len(p) for p in self.pauses.values()]

    def since(self, mark: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gen, n in zip(self.pauses, mark):
            p = self.pauses[gen][n:]
            out[f"gen{gen}"] = {"count": len(p), "total_ms": round(sum(p), 1),
                                "max_ms": round(max(p), 1) if p else None}
        return out


GC = GcPauses()


async def loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    """How late a 20 ms sleep wakes up (event-loop saturation), in ms."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.02)
        out.append((time.perf_counter() - t - 0.02) * 1000)


async def call_summary(stack: Stack) -> dict[str, Any]:
    calls, _ = await stack.calls.list_calls(limit=10000)
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    first_frame: list[float] = []
    waited: list[float] = []
    detectors: dict[str, int] = {}
    turns = 0
    for c in calls:
        statuses[c.status] = statuses.get(c.status, 0) + 1
        reasons[str(c.end_reason)] = reasons.get(str(c.end_reason), 0) + 1
        detail = await stack.calls.get(c.id)
        for e in detail.timeline if detail else []:
            if e.type == "turn_metrics":
                turns += 1
                v = (e.data or {}).get("first_frame_out_ms")
                if v is not None:
                    first_frame.append(float(v))
                w = (e.data or {}).get("silence_waited_ms")
                if w is not None:
                    waited.append(float(w))
                how = str((e.data or {}).get("detector") or "?")
                detectors[how] = detectors.get(how, 0) + 1
    return {"records": len(calls), "statuses": statuses, "end_reasons": reasons, "agent_turns": turns,
            "reply_first_frame_out_ms_p50": pct(first_frame, 50), "reply_first_frame_out_ms_p99": pct(first_frame, 99),
            "reply_first_frame_out_ms_max": round(max(first_frame), 1) if first_frame else None,
            "silence_waited_ms_p50": pct(waited, 50), "silence_waited_ms_p90": pct(waited, 90),
            "silence_waited_ms_p99": pct(waited, 99), "turn_ends": detectors}


# --- (1) + (2): load ------------------------------------------------------------------------------

async def load_step(n: int, rate: float, hold: float, ulaw: Path, tmp: Path, agents_dir: Path) -> dict[str, Any]:
    data = tmp / f"load-{n}"
    data.mkdir()
    stack = await Stack.start(data, agents_dir, AGENT_KEY, num_agents=n + 50)
    try:
        ramp = n / rate
        hold_ms = int((ramp + hold) * 1000)
        scn = scenario(tmp, f"load{n}", hold_ms, ulaw, loop=True, auto_media_port=True)
        TALLY.take()
        rss0, load0 = rss_mb(), loadavg()
        gc_mark = GC.mark()
        t_start = time.monotonic()
        run = asyncio.ensure_future(run_sipp(scn, stack.target, tmp, rate=rate, calls=n, limit=n,
                                             timeout=int(ramp * 2 + hold + 60)))
        # all calls are up from about `ramp` s on, until the first BYE at ramp + hold
        await asyncio.sleep(ramp + 2.0)
        live_at_start = len(stack.gateway.live)
        lags: list[float] = []
        stop = asyncio.Event()
        lagger = asyncio.ensure_future(loop_lag(stop, lags))
        cpu0, t0, (on0, wait0) = cpu_seconds(), time.monotonic(), schedstat()
        window = max(3.0, hold - 4.0)
        rss_peak, min_live = rss_mb(), live_at_start
        while time.monotonic() - t0 < window:
            await asyncio.sleep(0.5)
            rss_peak = max(rss_peak, rss_mb())
            min_live = min(min_live, len(stack.gateway.live))
        span = time.monotonic() - t0
        cpu = (cpu_seconds() - cpu0) / span
        on1, wait1 = schedstat()
        loop_on_cpu, loop_waiting = (on1 - on0) / span, (wait1 - wait0) / span
        stop.set()
        await lagger
        load_during = loadavg()
        sipp = await run
        wall = time.monotonic() - t_start
        stuck = await stack.wait_idle(10.0)
        stuck_info: dict[str, Any] = {}
        if stuck:
            stuck_info = stack.stuck_report()
            t_stuck = time.monotonic()
            left = await stack.wait_idle(90.0)
            stuck_info["still_live_after_100s"] = left
            stuck_info["drained_after_s"] = None if left else round(10 + time.monotonic() - t_stuck, 1)
        await asyncio.sleep(0.3)
        db = store_summary(stack.store_ops, time.monotonic() - t_start, n)
        summary = await call_summary(stack)
        rtp = stack.rtp
        tot = {k: sum(r[k] for r in rtp) for k in RTP_FIELDS}
        sent = max(1, tot["packets_sent"])
        return {
            "calls": n, "rate_cps": rate, "hold_all_up_s": hold, "wall_s": round(wall, 1),
            "sipp_successful": sipp.successful, "sipp_failed": sipp.failed, "sipp_exit": sipp.code,
            "gateway_max_live": stack.max_live, "db_pool_max_checked_out": stack.max_db_checked_out, "live_during_window_min": min_live,
            "left_live_after_10s": stuck, "stuck": stuck_info,
            **summary, **db,
            "rtp_calls_measured": len(rtp),
            "rtp_packets_sent": tot["packets_sent"], "rtp_packets_received": tot["packets_received"],
            "late_sends": tot["late_sends"], "late_sends_percent": round(100 * tot["late_sends"] / sent, 3),
            "max_send_lateness_ms": round(max((r["max_send_lateness_ms"] for r in rtp), default=0.0), 1),
            "skipped_ticks": tot["skipped_ticks"],
            "rx_lost": tot["lost"], "rx_lost_percent": round(100 * tot["lost"] / max(1, tot["packets_received"]
                                                                                   + tot["lost"]), 3),
            "rx_concealed": tot["concealed"], "rx_late_dropped": tot["late"],
            "rx_overflow_dropped": tot["overflow_dropped"],
            "max_jitter_ms": round(max((r["jitter_ms"] for r in rtp), default=0.0), 1),
            "cpu_percent_all_up": round(cpu * 100, 1),
            "loop_thread_on_cpu_percent": round(loop_on_cpu * 100, 1),
            "loop_thread_runnable_waiting_for_cpu_percent": round(loop_waiting * 100, 1), "cpu_percent_per_call": round(cpu * 100 / n, 3),
            "rss_before_mb": round(rss0, 1), "rss_peak_mb": round(rss_peak, 1),
            "rss_per_call_kb": round((rss_peak - rss0) * 1024 / n, 1),
            "loop_lag_ms_p50": pct(lags, 50), "loop_lag_ms_p99": pct(lags, 99),
            "loop_lag_ms_max": round(max(lags), 1) if lags else None,
            "setup_ms_p50": pct(sipp.rtts_ms, 50), "setup_ms_p99": pct(sipp.rtts_ms, 99),
            "setup_ms_max": round(max(sipp.rtts_ms), 1) if sipp.rtts_ms else None, "setup_samples": len(sipp.rtts_ms),
            "loadavg_before": load0, "loadavg_during": load_during, "gc_pauses": GC.since(gc_mark),
            "sipp_tail": sipp.out[-1500:] if sipp.failed or sipp.code else "",
            "warnings": TALLY.take(),
        }
    finally:
        await stack.close()


async def setup_only(calls: int, rate: float, uac_calls: int, tmp: Path, agents_dir: Path) -> dict[str, Any]:
    """Short calls (INVITE, 200, ACK, 0.5 s, BYE) at a modest rate: INVITE → 200 OK with no other load."""
    data = tmp / "setup"
    data.mkdir()
    stack = await Stack.start(data, agents_dir, AGENT_KEY, num_agents=1000)
    try:
        scn = scenario(tmp, "setup", 500, None, loop=False, auto_media_port=False)
        sipp = await run_sipp(scn, stack.target, tmp, rate=rate, calls=calls, limit=calls,
                              timeout=int(calls / rate + 60))
        ended = time.monotonic()
        await stack.wait_idle(10.0)
        statuses = await settled(stack, 60.0)  # every record closed, its writes no longer queued
        drained = time.monotonic() - ended
        db = store_summary(stack.store_ops, calls / rate, calls)
        r = sipp.rtts_ms
        del stack.store_ops[:]
        own = await uac_setup(stack, uac_calls)
        db_own = store_summary(stack.store_ops, 1.0, uac_calls)
        return {"calls": calls, "rate_cps": rate, "sipp_successful": sipp.successful, "sipp_failed": sipp.failed,
                "setup_ms_p50": pct(r, 50), "setup_ms_p90": pct(r, 90), "setup_ms_p99": pct(r, 99),
                "setup_ms_max": round(max(r), 1) if r else None, "samples": len(r),
                "records": statuses, "records_settled_s_after_sipp": round(drained, 1),
                "sipp_tail": sipp.out[-1500:] if sipp.failed or sipp.code else "",
                "own_uac_calls": len(own), "own_uac_setup_ms_p50": pct(own, 50), "own_uac_setup_ms_p90": pct(own, 90),
                "own_uac_setup_ms_p99": pct(own, 99), "own_uac_setup_ms_max": round(max(own), 1) if own else None,
                "db": db, "own_uac_db": {k: db_own[k] for k in ("db_ops_per_call", "db_op_ms_p50", "db_op_ms_p99",
                                                              "db_add_call_ms_p50", "db_add_call_ms_p99")},
                "loadavg": loadavg()}
    finally:
        await stack.close()


async def settled(stack: Stack, timeout: float) -> dict[str, int]:
    """The call records by status once none is open (or after `timeout` s, as they are then)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await stack.calls.store.counts_by_status()
        if time.monotonic() > deadline or not set(counts) - {s.value for s in TERMINAL}:
            return counts
        await asyncio.sleep(0.5)


async def uac_setup(stack: Stack, calls: int) -> list[float]:
    """INVITE → 200 OK timed by our own SipEndpoint as the caller (perf_counter), one call after another."""
    uac = SipEndpoint(host="127.0.0.1", port=0, transports=("udp",), rtp_port_range=(40002, 50000))
    await uac.start()
    times: list[float] = []
    try:
        for _ in range(calls):
            t = time.perf_counter()
            outgoing = await uac.invite(f"sip:+4930123456@{stack.target}", timeout=10)
            call = await outgoing.answered()
            times.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.2)
            await call.hangup()
            await asyncio.sleep(0.05)
        await stack.wait_idle(5.0)
    finally:
        await uac.close()
    return times


# --- (3): one call with the real offline engines, timed on the wire --------------------------------

class WireCapture:
    """Every UDP packet on `lo` to or from `port` (AF_PACKET, root), timestamped on arrival."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.packets: list[tuple[float, int, int, bytes]] = []  # (monotonic s, sport, dport, udp payload)
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except OSError:
                continue
            t = time.monotonic()
            if addr[2] == socket.PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 12:
                continue
            ip = data[14:]
            if ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", ip[ihl: ihl + 4])
            if self.port in (sport, dport):
                self.packets.append((t, sport, dport, ip[ihl + 8:]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def stream(self, *, to_port: bool) -> list[tuple[float, np.ndarray]]:
        """PCMU packets towards (or from) `port`, decoded: (arrival time, samples)."""
        out = []
        for t, sport, dport, p in self.packets:
            if (dport == self.port) == to_port and len(p) > 12 and (p[1] & 0x7F) == 0 and p[0] >> 6 == 2:
                out.append((t, ulaw_decode(p[12:])))
        return out


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


async def real_call(stack: Stack, ulaw: Path, lead_s: float, tmp: Path, n: int) -> dict[str, Any]:
    media_port = free_port() & ~1
    cap = WireCapture(media_port)
    try:
        scn = scenario(tmp, f"real{n}", int((lead_s + 9.0) * 1000), ulaw, loop=False, auto_media_port=False)
        sipp = await run_sipp(scn, stack.target, tmp, rate=1, calls=1, limit=1, timeout=60, media_port=media_port)
    finally:
        await stack.wait_idle(10.0)
        cap.stop()
    caller = cap.stream(to_port=False)   # SIPp → gateway
    agent = cap.stream(to_port=True)     # gateway → SIPp
    speech = [t for t, pcm in caller if rms(pcm) > 300]
    if not speech or not agent:
        return {"error": "no caller speech or no agent audio captured", "sipp": sipp.out[-1500:]}
    speech_start, speech_end = speech[0], speech[-1]
    greeting = [t for t, pcm in agent if rms(pcm) > 300 and t < speech_start]
    first_nonsilent = next((t for t, pcm in agent if t > speech_end and int(np.abs(pcm).max()) > 64), None)
    first_voiced = next((t for t, pcm in agent if t > speech_end and rms(pcm) > 300), None)
    calls, _ = await stack.calls.list_calls(limit=1)
    detail = await stack.calls.get(calls[0].id)
    metrics = [e.data for e in detail.timeline if e.type == "turn_metrics"] if detail else []
    turn = next((m for m in metrics if m.get("speech_end") is not None), metrics[-1] if metrics else {})
    heard = [t.text for t in detail.transcript] if detail else []

    def ms(t: float | None) -> float | None:
        return round((t - speech_end) * 1000, 1) if t is not None else None

    return {
        "sipp_successful": sipp.successful, "status": calls[0].status,
        "transcript": heard,
        "greeting_ended_before_caller_spoke": bool(greeting) and greeting[-1] < speech_start,
        "caller_speech_s": round(speech_end - speech_start, 2),
        "wire_end_of_speech_to_first_nonsilent_reply_packet_ms": ms(first_nonsilent),
        "wire_end_of_speech_to_first_voiced_reply_packet_ms": ms(first_voiced),
        "engine_turn_metrics": turn,
    }


async def real(k: int, tmp: Path) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"error": "the wire capture needs root (AF_PACKET)"}
    ulaw = tmp / "question.ulaw"
    lead = 7.0  # the receptionist's greeting lasts about 5 s
    await asyncio.to_thread(piper_ulaw, "I would like to book an appointment for Tuesday.", ulaw, lead, 1.0)
    data = tmp / "real"
    data.mkdir()
    stack = await Stack.start(data, ROOT / "agents", "receptionist", num_agents=10)
    try:
        runs = [await real_call(stack, ulaw, lead, tmp, i) for i in range(k)]
    finally:
        await stack.close()
    wire = [r["wire_end_of_speech_to_first_nonsilent_reply_packet_ms"] for r in runs
            if r.get("wire_end_of_speech_to_first_nonsilent_reply_packet_ms") is not None]
    return {"calls": runs, "wire_ms_median": pct(wire, 50), "loadavg": loadavg()}


# --- main -----------------------------------------------------------------------------------------

async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", default="50,100,200", help="simultaneous-call steps, comma-separated")
    p.add_argument("--rate", type=float, default=20.0, help="SIPp call rate (calls/s) while ramping up")
    p.add_argument("--hold", type=float, default=15.0, help="seconds all calls stay up after the ramp")
    p.add_argument("--vad", choices=("webrtc", "energy", "silero"), default="webrtc")
    p.add_argument("--detector", choices=("smart_turn", "silence"), default="smart_turn",
                   help="the agent's end-of-turn detector (smart_turn, the default, runs the audio model)")
    p.add_argument("--setup-calls", type=int, default=200)
    p.add_argument("--setup-rate", type=float, default=10.0)
    p.add_argument("--uac-calls", type=int, default=50, help="setup time timed by our own SIP caller")
    p.add_argument("--real", type=int, default=3, help="calls with the offline receptionist (0 = skip)")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--postgres", metavar="URL", help="calls store in PostgreSQL (e.g. "
                   "postgresql+asyncpg://postgres@127.0.0.1:5432/test) instead of SQLite")
    p.add_argument("--pool-trace", action="store_true", help="print the database pool status every 2 s")
    p.add_argument("--keep-heap", action="store_true",
                   help="do not freeze the start-up heap (parley up does; to measure what it saves)")
    p.add_argument("--log-level", default="WARNING")
    a = p.parse_args()
    for tool in ("sipp", "espeak-ng", "sox"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (make test installs it)")
    configure(level=a.log_level)
    logging.getLogger().addHandler(TALLY)
    register_instant_providers()
    DATABASE.postgres = a.postgres
    global POOL_TRACE, FREEZE_HEAP
    POOL_TRACE = a.pool_trace
    FREEZE_HEAP = not a.keep_heap
    report: dict[str, Any] = {"machine_cores": os.cpu_count(), "loadavg_at_start": loadavg(), "vad": a.vad,
                              "detector": a.detector, "startup_heap_frozen": FREEZE_HEAP,
                              "database": "postgresql" if a.postgres else "sqlite"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agents_dir = tmp / "agents"
        write_agent(agents_dir, a.vad, detector=a.detector)
        try:
            if not a.skip_load:
                ulaw = espeak_ulaw("what are your opening hours", tmp / "caller.ulaw", 1.5, 2.5)
                if a.setup_calls:
                    report["setup_no_load"] = await setup_only(a.setup_calls, a.setup_rate, a.uac_calls, tmp,
                                                               agents_dir)
                    print(json.dumps(report["setup_no_load"]), file=sys.stderr, flush=True)
                steps = []
                for n in (int(x) for x in a.calls.split(",") if x):
                    steps.append(await load_step(n, a.rate, a.hold, ulaw, tmp, agents_dir))
                    print(json.dumps(steps[-1]), file=sys.stderr, flush=True)
                report["load"] = steps
            if a.real:
                report["real_offline_call"] = await real(a.real, tmp)
        finally:
            await DATABASE.drop()
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())
