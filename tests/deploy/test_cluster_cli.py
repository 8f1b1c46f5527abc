"""`parley cluster …`, `parley worker` and `parley doctor`'s worker lines, run as a user runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from parley.calls.workers import WorkerInfo, WorkerRegistry
from tests.conftest import ROOT

PARLEY = [sys.executable, "-m", "parley.cli.main"]


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT / "src"), "REDIS_URL": "", **env}
    return subprocess.run([*PARLEY, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=60)


def test_cluster_workers_without_redis_is_one_readable_line(tmp_path: Path) -> None:
    r = run("cluster", "workers", env={}, cwd=tmp_path)
    assert r.returncode != 0 and "REDIS_URL is not set" in r.stderr and "Traceback" not in r.stderr


def test_worker_with_a_taken_side_port_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        r = run("worker", "--health-port", str(held.getsockname()[1]), env={"DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert r.returncode != 0 and "cannot bind the worker's side port" in r.stderr, r.stderr


def test_cluster_workers_and_doctor_list_the_registry(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    async def register() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        registry = WorkerRegistry(client, prefix=redis_prefix, lease_s=30)
        await registry.beat(WorkerInfo(id="w1", sip="127.0.0.1:5071", capacity=4, live=2))
        await client.aclose()

    asyncio.run(register())
    env = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix, "DATA_DIR": str(tmp_path),
           "AGENTS_DIR": str(ROOT / "agents"), "PROMPTS_DIR": str(ROOT / "prompts")}
    r = run("cluster", "workers", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "w1  running  sip 127.0.0.1:5071  2/4 live" in r.stdout
    d = run("doctor", "--no-providers", "--no-trunks", env=env, cwd=tmp_path)
    assert "ok   worker w1: running, sip 127.0.0.1:5071, 2/4 live calls" in d.stdout, d.stdout


def test_kamailio_sync_once_writes_the_running_workers(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    async def register() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        registry = WorkerRegistry(client, prefix=redis_prefix, lease_s=30)
        await registry.beat(WorkerInfo(id="w1", sip="127.0.0.1:5071", capacity=4))
        await registry.beat(WorkerInfo(id="w2", sip="127.0.0.1:5072", capacity=4, state="draining"))
        await client.aclose()

    asyncio.run(register())
    out = tmp_path / "dispatcher.list"
    r = run("cluster", "kamailio-sync", "--list", str(out), "--reload-cmd", "", "--once",
            env={"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["1 sip:127.0.0.1:5071 0 0 duid=w1"]  # the draining worker takes no new calls

