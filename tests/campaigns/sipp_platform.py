"""Shared parts of the SIPp campaign tests: a real `parley up`-style server in the test process (API, SIP
gateway, dialer, campaign runner on a fake clock) with a trunk to SIPp, the callees' audio, test agents."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from parley.api import ApiState, create_app
from parley.api.runtime import gateway_startup
from parley.campaigns.runner import CampaignRunner, Clock
from parley.telephony.trunks import Trunk
from tests.conftest import ROOT, free_port
from tests.eventually import eventually
from tests.telephony.conftest import ulaw_file

SCENARIOS = Path(__file__).parent / "scenarios"
KEY = {"X-API-Key": "test-key"}


class Server:
    """One platform process (in this test process): API + SIP gateway + dialer + campaign runner."""

    def __init__(self, app: Any, port: int, server: uvicorn.Server, task: asyncio.Task[Any]) -> None:
        self.app, self.server, self.task = app, server, task
        self.url = f"http://127.0.0.1:{port}"

    @property
    def state(self) -> ApiState:
        return ApiState.of(self.app)

    @property
    def runner(self) -> CampaignRunner:
        assert self.state.campaigns is not None
        return self.state.campaigns

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=KEY, timeout=30)

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


PlatformFactory = Callable[..., Awaitable[Server]]


async def platforms(settings: Any) -> AsyncIterator[PlatformFactory]:
    """`await start(trunk_port, clock, **settings_updates)` -> a started `Server` whose outbound trunk
    `carrier` points at `trunk_port` and whose campaign runner reads `clock` from its first step on (set
    after the start, the runner's first step — a resumed campaign's settling — could read the wall clock);
    all stopped afterwards."""
    servers: list[Server] = []

    async def start(trunk_port: int, clock: Clock, **updates: Any) -> Server:
        s = settings.model_copy(update={"sip_port": 0, "ring_timeout_s": 2.0, "num_agents": 8, **updates})
        app = create_app(s, api_keys=["test-key"], startup=[gateway_startup(warm=True, campaign_clock=clock)])
        port = free_port(kind=1)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
        task = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, timeout_s=60, what="the API server started")
        running = Server(app, port, server, task)
        servers.append(running)
        trunk = Trunk.model_validate({"name": "carrier", "outbound": {"host": "127.0.0.1", "port": trunk_port,
                                                                      "caller_id": "+4930123456"}})
        async with running.client() as client:
            r = await client.put("/api/trunks/carrier", json=trunk.model_dump(mode="json"))
            assert r.status_code == 200, r.text
        return running

    yield start
    for s in servers:
        s.server.should_exit = True
    await asyncio.gather(*(s.task for s in servers), return_exceptions=True)


def hello(tmp_path: Path, speech_wav: Any) -> None:
    """callee.ulaw: a person saying hello; machine.ulaw (the voicemail branch, which SIPp loads at start)
    stays one second of silence unless a test writes a greeting there."""
    ulaw_file(speech_wav("Hello?", engine="espeak"), tmp_path / "callee.ulaw", lead_silence_s=0.3)
    (tmp_path / "machine.ulaw").write_bytes(b"\xff" * 8000)


def callee_lines(tmp_path: Path, speech_wav: Any, *lines: tuple[float, str]) -> None:
    """callee.ulaw: each line spoken (piper) after its `silence` seconds, for a callee that converses."""
    with open(tmp_path / "callee.ulaw", "wb") as out:
        for i, (silence, text) in enumerate(lines):
            part = ulaw_file(speech_wav(text, engine="piper"), tmp_path / f"line{i}.ulaw", lead_silence_s=silence)
            out.write(part.read_bytes())


def machine(tmp_path: Path, speech_wav: Any) -> float:
    """machine.ulaw: a voicemail greeting, a 1 kHz beep, then silence; returns when the beep ends (s)."""
    greeting = speech_wav("Hi, you have reached Anna Miller. I can't take your call right now. "
                          "Please leave a message after the tone.", engine="espeak")
    subprocess.run(["sox", str(greeting), "-r", "8000", "-c", "1", str(tmp_path / "g.wav"), "pad", "0.3", "0.4"],
                   check=True)
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", str(tmp_path / "beep.wav"), "synth", "0.4", "sine", "1000",
                    "vol", "0.4"], check=True)
    subprocess.run(["sox", str(tmp_path / "g.wav"), str(tmp_path / "beep.wav"), "-t", "ul",
                    str(tmp_path / "machine.ulaw"), "pad", "0", "8"], check=True)
    return (tmp_path / "machine.ulaw").stat().st_size / 8000 - 8


def receptionist(tmp_path: Path, **changes: Any) -> Path:
    """An agents folder holding the shipped receptionist with `changes` applied to its top-level keys."""
    folder = tmp_path / "agents"
    folder.mkdir(exist_ok=True)
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec.update(changes)
    (folder / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    return folder


def amd_agents(tmp_path: Path, action: str = "leave_message", **changes: Any) -> Path:
    """The receptionist with answering-machine detection on and `action` on a machine."""
    return receptionist(tmp_path, amd={
        "enabled": True, "action": action,
        "message": "Hi {{ name }}, this is Parley Dental about your appointment. Please call us back."}, **changes)


def peak_overlap(calls: list[dict[str, Any]]) -> int:
    """The most calls that were dialing or talking at the same moment (from their records)."""
    edges = []
    for c in calls:
        if c["dialed_at"] and c["ended_at"]:
            edges += [(c["dialed_at"], 1), (c["ended_at"], -1)]
    peak = now = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


async def campaign_done(client: httpx.AsyncClient, cid: str, timeout: float) -> dict[str, Any]:
    """The campaign once it is completed or canceled."""
    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/api/campaigns/{cid}")).json()
        return body if body["state"] in ("completed", "canceled") else None

    return await eventually(done, timeout_s=timeout, interval_s=0.2, what=f"campaign {cid} done")


async def recipients(client: httpx.AsyncClient, cid: str) -> dict[str, dict[str, Any]]:
    """The campaign's recipients by number."""
    rows = (await client.get(f"/api/campaigns/{cid}", params={"recipients": True})).json()["recipients"]
    return {r["number"]: r for r in rows}
