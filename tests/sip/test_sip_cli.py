"""`parley sip echo` as a separate process, called by our own UAC over UDP and TCP."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import free_port
from tests.sip.conftest import dominant_frequency, tone

pytestmark = [pytest.mark.sip]


@pytest.mark.parametrize(("transport", "args", "expect_hz"), [
    ("udp", [], 1000.0),               # echo: we hear our own 1000 Hz back
    ("tcp", ["--tone", "440"], 440.0),  # tone: we hear 440 Hz whatever we send
])
async def test_sip_echo_command(endpoint, transport: str, args: list[str], expect_hz: float) -> None:
    port = free_port(__import__("socket").SOCK_STREAM)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli.main", "sip", "echo", "--port", str(port), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"listening" in line, line
        out = await endpoint.invite(f"sip:echo@127.0.0.1:{port};transport={transport}", timeout=10)
        call = await out.answered()
        call.rtp.write(tone(1000, 1.0))
        frames = []
        for _ in range(60):
            frame = await call.rtp.read_frame()
            assert frame is not None
            frames.append(frame)
        await call.hangup()
        pcm = np.concatenate(frames)
        loud = np.abs(pcm) > 1000
        assert loud.sum() > 3000
        start = int(np.argmax(loud))
        assert abs(dominant_frequency(pcm[start:start + 4000]) - expect_hz) < 20
    finally:
        proc.send_signal(2)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def test_sip_echo_rejects_bad_transport() -> None:
    result = subprocess.run([sys.executable, "-m", "parley.cli.main", "sip", "echo", "--transport", "sctp"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "--transport must be udp, tcp or both" in result.stderr
