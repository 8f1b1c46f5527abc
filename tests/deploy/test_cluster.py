"""`make cluster` as it runs: deploy/cluster.sh under honcho — Kamailio in front, two `parley worker`s, the
API, the dispatcher sync — on real PostgreSQL and Redis, called by SIPp through Kamailio (issue 15).

A fresh cluster per test (~7 s to start); the first test's checks run in order on its cluster: calls land
on both workers and complete with transcripts; a cluster cap of 3 admits exactly 3; `kill -9` of a worker
closes its live calls `failed`/`worker_lost` and Kamailio stops sending it calls.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.eventually import eventually
from tests.sip.sipp import run_sipp, uac_scenario

pytestmark = [pytest.mark.sip, pytest.mark.slow]

AGENT = """name: "Cluster"
language: en
components:
  stt: {provider: pocketsphinx}
  llm: {provider: scripted}
  tts: {provider: espeak}
  vad: {provider: webrtc, aggressiveness: 2, frame_ms: 20}
prompts: {inbound: default_inbound, outbound: default_outbound}
greeting: {inbound: "Hello from the cluster.", outbound: "Hello."}
first_speaker: agent
max_duration_s: 120
"""
KEY = {"X-API-Key": "cluster-key"}


@dataclass
class Cluster:
    proc: subprocess.Popen[bytes]
    sip_port: int
    api: str
    run_dir: Path
    log: Path

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.api, headers=KEY, timeout=10) as client:
            r = await client.get(path)
            return r.json()

    async def workers(self) -> list[dict[str, Any]]:
        try:
            return list((await self.get("/health")).get("workers", []))
        except httpx.HTTPError:
            return []

    def dispatcher_list(self) -> list[str]:
        path = self.run_dir / "dispatcher.list"
        return [line for line in path.read_text().splitlines() if line.startswith("1 ")] if path.exists() else []

    def kamcmd(self, *args: str) -> str:
        out = subprocess.run(["kamcmd", "-s", f"unix:{self.run_dir / 'kamailio_ctl'}", *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout + out.stderr

    async def calls(self) -> list[dict[str, Any]]:
        return list((await self.get("/api/calls?limit=100"))["calls"])


@asynccontextmanager
async def running_cluster(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
                          name: str = "c", drain_timeout_s: float = 60.0) -> AsyncIterator[Cluster]:
    """deploy/cluster.sh started, two workers registered and loaded in Kamailio; stopped with SIGTERM after
    (workers wait up to `drain_timeout_s` for their live calls)."""
    tmp_path = tmp_path / name
    tmp_path.mkdir()
    for tool in ("kamailio", "kamcmd", "sipp", "espeak-ng"):
        if not any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]):
            pytest.skip(f"{tool} is not installed (make test installs it)")
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "cluster.yaml").write_text(AGENT)
    sip_port, api_port = free_port(), free_port()
    venv_bin = Path(os.sys.executable).parent  # type: ignore[attr-defined]
    env = {**os.environ, "PATH": f"{venv_bin}:/usr/sbin:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT / "src"), "SIP_PORT": str(sip_port), "API_PORT": str(api_port),
           "NUM_WORKERS": "2", "DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
           "API_KEYS": KEY["X-API-Key"], "DATA_DIR": str(tmp_path / "data"), "AGENTS_DIR": str(agents),
           "PROMPTS_DIR": str(ROOT / "prompts"), "DEFAULT_AGENT": "cluster", "NUM_AGENTS": "4",
           "MAX_CONCURRENT_CALLS": "3", "DRAIN_TIMEOUT_S": str(drain_timeout_s), "WORKER_LEASE_S": "3", "WORKER_HEARTBEAT_S": "0.5",
           "RTP_PORT_MIN": "31000", "RTP_PORT_MAX": "33000", "KAMAILIO_SHM_MB": "64"}
    log = tmp_path / "cluster.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", str(ROOT / "deploy" / "cluster.sh")], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    c = Cluster(proc, sip_port, f"http://127.0.0.1:{api_port}", tmp_path / "data" / "cluster", log)
    try:
        async def two_running() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"make cluster exited:\n{log.read_text()[-3000:]}")
            running = [w for w in await c.workers() if w["state"] == "running"]
            if len(running) != 2 or len(c.dispatcher_list()) != 2:
                return False
            loaded = c.kamcmd("dispatcher.list")  # what Kamailio routes to, not just the file
            return all(f"URI: sip:{w['sip']}" in loaded for w in running)

        await eventually(two_running, timeout_s=90, interval_s=0.5, what="two workers registered and in Kamailio")
        yield c
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # every process of the cluster is gone
        leftover = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert not leftover, f"processes left after SIGTERM: {leftover}"


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, postgres_url, redis_url, redis_prefix) as c:
        yield c


async def _sipp(c: Cluster, tmp_path: Path, *, calls: int, pause_ms: int, expect: int | None = None,
                limit: int = 3, timeout: float = 60) -> Any:
    scenario = uac_scenario("PCMU", pause_ms=pause_ms, **({"expect": expect} if expect else {}))
    work = tmp_path / f"sipp-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    return await run_sipp(scenario, f"127.0.0.1:{c.sip_port}", work, free_port(), calls=calls,
                          extra=["-s", "+4930123456", "-l", str(limit), "-r", "5"], timeout=timeout)


async def test_cluster_balances_caps_and_survives_kill_9(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    # 1. twenty calls through Kamailio: both workers take some, every one completes with a transcript
    # (at most 2 at once: a call's slot is freed a moment after SIPp has seen its BYE answered)
    result = await _sipp(c, tmp_path, calls=20, pause_ms=1500, limit=2, timeout=120)
    assert result.code == 0, str(result)

    async def twenty_done() -> list[dict[str, Any]] | None:
        done = [x for x in await c.calls() if x["status"] == "completed"]
        return done if len(done) == 20 else None

    done = await eventually(twenty_done, timeout_s=30, interval_s=0.5, what="20 completed calls")
    assert len({x["worker"] for x in done}) == 2, {x["worker"] for x in done}
    detail = await c.get(f"/api/calls/{done[0]['id']}")
    assert any("cluster" in t["text"].lower() for t in detail["transcript"] if t["role"] == "agent"), detail

    # 2. a cap of 3 across the cluster: three long calls up, the fourth refused whichever worker it hits
    long_calls = asyncio.create_task(_sipp(c, tmp_path, calls=3, pause_ms=12000, limit=3, timeout=90))

    async def three_live() -> list[dict[str, Any]] | None:
        live = [x for x in await c.calls() if x["status"] == "in_progress"]
        return live if len(live) == 3 else None

    live = await eventually(three_live, timeout_s=30, interval_s=0.3, what="three calls in progress")
    fourth = await _sipp(c, tmp_path, calls=1, pause_ms=0, expect=503, limit=1, timeout=20)
    assert fourth.code == 0, str(fourth)

    # 3. kill -9 a worker holding live calls: its calls close worker_lost, Kamailio drops it
    victim = next(x["worker"] for x in live)
    victim_calls = [x["id"] for x in live if x["worker"] == victim]
    survivor = next(w["id"] for w in await c.workers() if w["id"] != victim)
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)

    async def closed() -> bool:
        states = [(await c.get(f"/api/calls/{i}")) for i in victim_calls]
        return all(s["status"] == "failed" and s["end_reason"] == "worker_lost" for s in states)

    await eventually(closed, timeout_s=20, interval_s=0.5, what=f"calls of {victim} closed worker_lost")
    await eventually(lambda: not any(victim.split(":")[1] in line for line in c.dispatcher_list())
                     and all(f"duid={victim}" not in line for line in c.dispatcher_list()),
                     timeout_s=10, what="the dead worker out of Kamailio's list")
    await long_calls  # the survivor's calls end normally (SIPp sees the dead worker's as failed)

    # new calls all reach the survivor (or the worker-loop's replacement), none the dead one
    before = {x["id"] for x in await c.calls()}
    again = await _sipp(c, tmp_path, calls=4, pause_ms=500, limit=2, timeout=60)
    assert again.code == 0, str(again)
    new = [x for x in await c.calls() if x["id"] not in before]
    assert len(new) == 4 and victim not in {x["worker"] for x in new}, new
    assert survivor in {w["id"] for w in await c.workers()}


async def test_sigterm_drains_a_worker_its_call_completes_new_calls_go_elsewhere(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    c = cluster
    long_call = asyncio.create_task(_sipp(c, tmp_path, calls=1, pause_ms=6000, limit=1, timeout=40))

    async def one_live() -> dict[str, Any] | None:
        live = [x for x in await c.calls() if x["status"] == "in_progress"]
        return live[0] if live else None

    live = await eventually(one_live, timeout_s=20, interval_s=0.3, what="a call in progress")
    draining = live["worker"]
    os.kill(int(draining.rsplit(":", 1)[1]), signal.SIGTERM)

    async def marked() -> bool:
        cards = {w["id"]: w["state"] for w in await c.workers()}
        return cards.get(draining) == "draining" and all(f"duid={draining}" not in line
                                                         for line in c.dispatcher_list())

    await eventually(marked, timeout_s=10, interval_s=0.2, what=f"{draining} draining and out of Kamailio")
    before = {x["id"] for x in await c.calls()}
    short = await _sipp(c, tmp_path, calls=2, pause_ms=300, limit=1, timeout=30)
    assert short.code == 0, str(short)
    new = [x for x in await c.calls() if x["id"] not in before]
    assert new and draining not in {x["worker"] for x in new}, new

    assert (await long_call).code == 0  # the draining worker finished its call

    async def completed() -> dict[str, Any] | None:
        call = await c.get(f"/api/calls/{live['id']}")
        return call if call["status"] != "in_progress" else None

    done = await eventually(completed, timeout_s=10, interval_s=0.2, what="the drained call's record closed")
    assert done["status"] == "completed", done

    async def gone() -> bool:
        return draining not in {w["id"] for w in await c.workers()}

    await eventually(gone, timeout_s=15, interval_s=0.5, what=f"{draining} out of the registry after draining")


async def test_a_queued_outbound_call_survives_the_restart_of_every_process(
        tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.sip.sipp import sipp_server

    trunk_port = free_port()
    due = (datetime.now(UTC) + timedelta(seconds=20)).isoformat()
    async with running_cluster(tmp_path, postgres_url, redis_url, redis_prefix, "first") as first:
        async with httpx.AsyncClient(base_url=first.api, headers=KEY, timeout=10) as client:
            r = await client.put("/api/trunks/carrier", json={"name": "carrier", "outbound": {
                "host": "127.0.0.1", "port": trunk_port, "caller_id": "+4930123456"}})
            assert r.status_code == 200, r.text
            r = await client.post("/api/outbound-call", json={"to_number": "+15551234567", "schedule_at": due})
            assert r.status_code == 200, r.text
            call_id = r.json()["call_id"]
    # every process stopped; the callee comes up, then a new cluster on the same PostgreSQL and Redis
    callee = await sipp_server("", tmp_path, trunk_port, builtin="uas", timeout=90)
    try:
        # no drain: the stop hangs the live call up at once (the drain itself is the SIGTERM test's)
        async with running_cluster(tmp_path, postgres_url, redis_url, redis_prefix, "second",
                                   drain_timeout_s=0) as second:
            async def answered() -> dict[str, Any] | None:
                call = await second.get(f"/api/calls/{call_id}")
                return call if call["status"] in ("in_progress", "completed") else None

            call = await eventually(answered, timeout_s=60, interval_s=0.5, what="the queued call dialed and answered")
            assert call["attempt"] == 1 and call["worker"], call
            await asyncio.sleep(2)
            detail = await second.get(f"/api/calls/{call_id}")
            dialings = [e for e in detail["timeline"] if e["type"] == "status" and e["data"].get("to") == "dialing"]
            assert len(dialings) == 1, detail["timeline"]  # dialed once
    finally:
        # the cluster's shutdown hung the call up: SIPp (-m 1) ends by itself; never leave its process behind
        try:
            await asyncio.wait_for(asyncio.shield(callee), 30)
        except (asyncio.TimeoutError, AssertionError):
            pass
