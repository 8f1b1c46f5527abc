"""The `parley` command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import parley
from tests.conftest import ROOT, free_port

PARLEY = [sys.executable, "-m", "parley.cli.main"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*PARLEY, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60)


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"parley {parley.__version__}"


def test_config_masks_secrets() -> None:
    r = run("config", "--json", env={"AZURE_SPEECH_KEY": "sk-very-secret", "API_KEYS": "k1,k2",
                                     "DATABASE_URL": "postgresql+asyncpg://u:hunter2@db/x"})
    assert r.returncode == 0, r.stderr
    assert "sk-very-secret" not in r.stdout and "hunter2" not in r.stdout and "k1" not in r.stdout
    assert '"azure_speech_key": "********"' in r.stdout
    assert "u:********@db/x" in r.stdout


def test_bad_setting_is_one_readable_line() -> None:
    r = run("config", env={"API_PORT": "eighty"})
    assert r.returncode == 1
    assert "API_PORT" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_agents_list_and_show() -> None:
    r = run("agents", "list")
    assert r.returncode == 0 and "receptionist" in r.stdout and "German Assistant" in r.stdout
    r = run("agents", "show", "receptionist")
    assert r.returncode == 0 and "provider: scripted" in r.stdout
    r = run("agents", "show", "nobody")
    assert r.returncode == 1 and "unknown agent 'nobody'" in r.stderr


def test_agents_validate_shipped_and_broken(tmp_path: Path) -> None:
    assert run("agents", "validate").returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ncomponents:\n  tts: {provider: loudspeaker}\n")
    r = run("agents", "validate", str(broken))
    assert r.returncode == 1
    assert f"{broken}: components.tts: unknown tts provider 'loudspeaker'" in r.stderr.replace("\n", " ")


def test_unknown_command_fails() -> None:
    r = run("fly")
    assert r.returncode != 0 and "fly" in r.stderr


def test_api_serves_health_and_guards_routes() -> None:
    port = free_port(kind=1)  # TCP
    proc = subprocess.Popen([*PARLEY, "api", "--port", str(port)], cwd=ROOT, env={**os.environ, "API_KEYS": "k"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"parley api did not start: {proc.stdout.read() if proc.poll() is not None else ''}")
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["status"] == "healthy"
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        denied = httpx.get(f"http://127.0.0.1:{port}/api/agents")
        assert denied.status_code == 401 and denied.json()["message"]
        ok = httpx.get(f"http://127.0.0.1:{port}/api/agents", headers={"X-API-Key": "k"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
