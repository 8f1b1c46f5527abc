"""Fixtures: the LiveKit server-API stand-in (standin.py) served on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import ROOT
from tests.livekit.standin import StandInLiveKit


@pytest.fixture
async def livekit() -> AsyncIterator[tuple[StandInLiveKit, str]]:
    """The stand-in and its URL (http://127.0.0.1:PORT)."""
    standin = StandInLiveKit()
    runner = web.AppRunner(standin.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield standin, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def livekit_env(standin: StandInLiveKit, url: str, tmp_path: Path, *, secret: str | None = None) -> dict[str, str]:
    """Environment for a `parley` process that talks to the stand-in."""
    return {"LIVEKIT_URL": url, "LIVEKIT_API_KEY": standin.key, "LIVEKIT_API_SECRET": secret or standin.secret,
            "DATA_DIR": str(tmp_path / "data"), "AGENTS_DIR": str(ROOT / "agents"),
            "PROMPTS_DIR": str(ROOT / "prompts")}


async def parley(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the `parley` CLI as a user does; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli.main", *args, cwd=ROOT, env={**os.environ, "COLUMNS": "250", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()
