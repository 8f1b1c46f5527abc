"""Campaign throughput against SIPp: 1,000 rows dialed through a trunk to a SIPp callee that answers
every INVITE with 486 Busy (retries off), so what is measured is the campaign pipeline — runner, store,
queue, dialer, our SIP stack — not conversations. Dial attempts per second = rows / wall time from start
to the campaign's completion.

    PYTHONPATH=src python bench/campaigns/throughput.py [--rows 1000] [--concurrent 50] [--cps 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "campaigns" / "scenarios" / "callees.xml"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(rows: int, concurrent: int, cps: float) -> dict[str, float]:
    from parley.api import create_app
    from parley.api.runtime import gateway_startup
    from parley.logging import configure
    from parley.settings import Settings

    configure(level="WARNING", json=False)
    with tempfile.TemporaryDirectory() as d:
        for name in ("callee.ulaw", "machine.ulaw"):  # the scenario's answering branches load these
            (Path(d) / name).write_bytes(b"\xff" * 8000)
        trunk_port = free_port()
        media = free_port() & ~1
        sipp = await asyncio.create_subprocess_exec(
            "timeout", "-k", "2", "300", "sipp", "-sf", str(SCENARIO), "-i", "127.0.0.1", "-mi", "127.0.0.1",
            "-p", str(trunk_port), "-mp", str(media), "-m", str(rows), "-nostdin", "-timeout", "290s",
            cwd=d, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        s = Settings(_env_file=None, data_dir=Path(d) / "data", agents_dir=ROOT / "agents",  # type: ignore[call-arg]
                     prompts_dir=ROOT / "prompts", api_keys="k", sip_port=free_port(),  # type: ignore[arg-type]
                     num_agents=concurrent, max_calls_per_second=cps)
        app = create_app(s, startup=[gateway_startup(warm=False)])
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p",
                                         headers={"X-API-Key": "k"}, timeout=60) as c:
                r = await c.put("/api/trunks/carrier", json={"name": "carrier", "outbound": {
                    "host": "127.0.0.1", "port": trunk_port, "caller_id": "+4930123456"}})
                assert r.status_code == 200, r.text
                csv = "number\n" + "".join(f"+49402{i:07d}\n" for i in range(rows))
                r = await c.post("/api/campaigns", json={"agent": "receptionist", "csv": csv,
                                                         "max_concurrent": concurrent,
                                                         "retry": {"busy": None, "failed": None}})
                cid = r.json()["id"]
                t0 = time.perf_counter()
                cpu0 = os.times()
                await c.post(f"/api/campaigns/{cid}/start")
                while True:
                    body = (await c.get(f"/api/campaigns/{cid}")).json()
                    if body["state"] == "completed":
                        break
                    if os.environ.get("BENCH_DEBUG"):
                        print(body["counts"], body["outcomes"], [(x["status"], x["end_reason"]) for x in (await c.get("/api/calls", params={"campaign": cid})).json()["calls"]][:3], flush=True)
                    await asyncio.sleep(0.2)
                took = time.perf_counter() - t0
                cpu1 = os.times()
        await sipp.wait()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        return {"rows": rows, "outcomes": body["outcomes"], "seconds": round(took, 1),
                "dial_attempts_per_s": round(rows / took, 1), "parley_cpu_s": round(cpu, 1),
                "max_concurrent": concurrent, "dialer_cps": cps, "sipp_exit": sipp.returncode}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--cps", type=float, default=100.0)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.rows, a.concurrent, a.cps)), indent=2))
