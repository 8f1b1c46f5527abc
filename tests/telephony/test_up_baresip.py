"""`parley up` (what `make run` starts) answers a real softphone out of the box: baresip calls it with
speech as its microphone, the offline agent answers, and both sides' records show the conversation."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, free_port
from tests.eventually import eventually
from tests.sip.test_baresip import baresip_config
from tests.telephony.conftest import speech_energy_seconds

pytestmark = [pytest.mark.sip, pytest.mark.slow]


def _seconds(wav_path: Path) -> float:
    with wave.open(str(wav_path)) as w:
        return w.getnframes() / w.getframerate()


def _microphone(speech: Path, out: Path, lead_s: float, tail_s: float) -> Path:
    subprocess.run(["sox", str(speech), "-r", "8000", "-c", "1", "-b", "16", str(out), "pad", str(lead_s),
                    str(tail_s)], check=True)
    return out


async def test_parley_up_answers_baresip(tmp_path: Path, speech_wav) -> None:  # type: ignore[no-untyped-def]
    sip_port, api_port = free_port(), free_port(kind=1)
    env = {**os.environ, "SIP_PORT": str(sip_port), "API_PORT": str(api_port), "API_KEYS": "k",
           "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO"}
    log_path = tmp_path / "parley-up.log"
    log_file = log_path.open("w")
    server = subprocess.Popen([sys.executable, "-m", "parley.cli.main", "up"], cwd=ROOT, env=env,
                              stdout=log_file, stderr=subprocess.STDOUT, text=True)

    def server_log() -> str:
        log_file.flush()
        return log_path.read_text()[-4000:]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", headers={"X-API-Key": "k"}) as api:
            async def healthy() -> httpx.Response | None:
                if server.poll() is not None:
                    pytest.fail(f"parley up exited:\n{server_log()}")
                try:
                    health = await api.get("/health")
                except httpx.HTTPError:
                    return None
                return health if health.status_code == 200 else None

            try:
                health = await eventually(healthy, timeout_s=60, interval_s=0.3, what="parley up healthy")
            except AssertionError:
                pytest.fail(f"parley up did not start:\n{server_log()}")
            assert {"db", "queue", "sip"} <= set(health.json()["services"])
            # started, the process keeps its start-up heap out of the collector's full collections, and times them
            metrics = (await api.get("/metrics")).text
            frozen = re.search(r"^parley_gc_frozen_objects (\S+)$", metrics, re.M)
            assert frozen is not None and float(frozen.group(1)) > 10_000
            assert re.search(r'^parley_gc_pause_seconds_count\{generation="2"\} [1-9]', metrics, re.M)

            conf = baresip_config(tmp_path, free_port())
            speech = speech_wav("I would like to book an appointment for Tuesday.", engine="piper")
            mic = _microphone(speech, conf / "caller.wav", lead_s=6.0, tail_s=10.0)
            config = (conf / "config").read_text().replace(str(conf / "tone600.wav"), str(mic))
            (conf / "config").write_text(config)
            phone = await asyncio.create_subprocess_exec(
                "timeout", "35", "baresip", "-f", str(conf), "-t", "20", "-e",
                f"/dial sip:+4930123456@127.0.0.1:{sip_port}", cwd=str(conf),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            phone_out = (await phone.communicate())[0].decode(errors="replace")

            async def completed() -> list[dict[str, Any]] | None:
                calls: list[dict[str, Any]] = (await api.get("/api/calls")).json()["calls"]
                return calls if calls and calls[0]["status"] == "completed" else None

            try:
                calls = await eventually(completed, timeout_s=20, interval_s=0.2, what="the call completed")
            except AssertionError:
                calls = (await api.get("/api/calls")).json()["calls"]
                pytest.fail(f"{calls}\n--- baresip ---\n{phone_out[-3000:]}\n--- parley up ---\n{server_log()}")
            detail = (await api.get(f"/api/calls/{calls[0]['id']}")).json()
            said = " ".join(t["text"] for t in detail["transcript"] if t["role"] == "caller").lower()
            assert "appointment" in said and "tuesday" in said, detail["transcript"]
            text = (await api.get(f"/api/calls/{calls[0]['id']}/transcript", params={"format": "text"})).text
            assert "book" in text.lower()
    finally:
        log_file.close()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()

    dumps = sorted(conf.glob("dump-*-dec.wav"))
    assert dumps, "baresip recorded nothing"
    with wave.open(str(dumps[-1])) as w:
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    speech_end = 6.0 + _seconds(speech)
    assert speech_energy_seconds(heard[: int(6.0 * rate)], rate) > 1.5  # the greeting
    assert speech_energy_seconds(heard[int(speech_end * rate):], rate) > 1.0  # the reply to the question
