"""Our UAC calls SIPp: progress, digest auth against verifyauth, echoed audio, CANCEL, transfer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from parley.sip.auth import Credentials
from parley.sip.call import Call
from parley.sip.errors import CallFailed
from tests.conftest import free_port
from tests.sip.conftest import dominant_frequency, rms, tone
from tests.sip.sipp import sipp_server

pytestmark = [pytest.mark.sip]
SCENARIOS = Path(__file__).parent / "scenarios"


async def echo_check(call: Call, freq: float = 1000.0) -> np.ndarray:
    """Send one second of a tone, collect what comes back, return the received audio."""
    call.rtp.write(tone(freq, 1.0))
    frames = []
    for _ in range(75):  # 1.5 s of 20 ms frames
        frame = await call.rtp.read_frame()
        if frame is None:
            break
        frames.append(frame)
    return np.concatenate(frames)


def assert_echo(pcm: np.ndarray, freq: float = 1000.0) -> None:
    loud = np.abs(pcm) > 1000
    assert loud.sum() > 4000, f"echo too short or silent (rms {rms(pcm):.0f})"
    start = int(np.argmax(loud))
    assert abs(dominant_frequency(pcm[start:start + 4000]) - freq) < 20


async def test_call_sipp_uas_with_echo_and_hang_up(endpoint, tmp_path: Path) -> None:
    port = free_port()
    sipp = await sipp_server("", tmp_path, port, builtin="uas", extra=["-rtp_echo"])
    out = await endpoint.invite(f"sip:echo@127.0.0.1:{port}", from_="sip:parley@127.0.0.1", timeout=10)
    call = await out.answered()
    assert [p.code for p in out.history][-2:] == [180, 200]
    pcm = await echo_check(call)
    await call.hangup()
    result = await sipp
    assert result.code == 0, str(result)
    assert_echo(pcm)
    assert call.end_reason == "local_bye"


@pytest.mark.parametrize(("password", "ok"), [("secret", True), ("wrong", False)])
async def test_digest_auth_against_verifyauth_trunk(endpoint, tmp_path: Path, password: str, ok: bool) -> None:
    port = free_port()
    sipp = await sipp_server(SCENARIOS / "uas_verifyauth.xml", tmp_path, port, extra=["-rtp_echo"])
    out = await endpoint.invite(f"sip:+15551234@127.0.0.1:{port}", from_="sip:+15550000@127.0.0.1",
                                auth=Credentials("parley", password), timeout=10)
    steps = [p async for p in out]  # the 401 we answer is not the end of the story
    assert steps[-1].code == (200 if ok else 403) and [p.code for p in steps if p.final] == [steps[-1].code]
    if ok:
        call = await out.answered()
        pcm = await echo_check(call, 700.0)
        await call.hangup()
        assert_echo(pcm, 700.0)
    else:
        with pytest.raises(CallFailed) as info:
            await out.answered()
        assert info.value.code == 403
    assert 401 in [p.code for p in out.history]
    result = await sipp
    assert result.code == 0, str(result)


async def test_cancel_a_ringing_call(endpoint, tmp_path: Path) -> None:
    port = free_port()
    sipp = await sipp_server(SCENARIOS / "uas_cancelled.xml", tmp_path, port)
    out = await endpoint.invite(f"sip:busy@127.0.0.1:{port}", timeout=10)
    async for progress in out:
        if progress.code == 180:
            await out.cancel()
            break
    with pytest.raises(CallFailed) as info:
        await out.answered()
    assert info.value.code == 487
    result = await sipp
    assert result.code == 0, str(result)


async def test_blind_transfer_reports_notify_outcome(endpoint, tmp_path: Path) -> None:
    port = free_port()
    sipp = await sipp_server(SCENARIOS / "uas_transfer.xml", tmp_path, port)
    out = await endpoint.invite(f"sip:agent@127.0.0.1:{port}", timeout=10)
    call = await out.answered()
    assert call.negotiated.codec == "PCMA"
    assert await call.transfer("sip:carol@127.0.0.1:5999", timeout=10) is True
    await call.hangup()
    result = await sipp
    assert result.code == 0, str(result)


async def test_unanswered_call_times_out(endpoint) -> None:
    """Nobody listens on the port: Timer B fires and the call fails with 408."""
    port = free_port()
    out = await endpoint.invite(f"sip:nobody@127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(CallFailed) as info:
        await asyncio.wait_for(out.answered(), 5)
    assert info.value.code == 408
