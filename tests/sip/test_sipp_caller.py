"""SIPp calls our endpoint: codecs and media, DTMF, CANCEL, BYE both ways, retransmissions, auth."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from parley.media.g711 import ulaw_encode
from parley.sip.call import Call, IncomingCall
from tests.conftest import free_port
from tests.sip.conftest import dominant_frequency, rms, tone
from tests.sip.sipp import play_pcap, rtp_stream, run_sipp, uac_scenario

pytestmark = [pytest.mark.sip]


def target(ep) -> str:  # type: ignore[no-untyped-def]
    return f"127.0.0.1:{ep.port}"


async def record(call: Call, frames: list[np.ndarray]) -> None:
    while True:
        frame = await call.rtp.read_frame()
        if frame is None:
            return
        frames.append(frame)


async def test_pcmu_call_with_raw_ulaw_media_reaches_us_as_a_tone(endpoint, tmp_path: Path) -> None:
    ulaw = tmp_path / "tone.ulaw"
    ulaw.write_bytes(ulaw_encode(tone(440, 1.5)))
    frames: list[np.ndarray] = []
    answered: list[Call] = []

    async def handler(incoming: IncomingCall) -> None:
        await incoming.ring()
        call = await incoming.accept()
        answered.append(call)
        await record(call, frames)

    endpoint.on_incoming = handler
    scenario = uac_scenario("PCMU", actions=rtp_stream(ulaw, 0), pause_ms=2000)
    result = await run_sipp(scenario, target(endpoint), tmp_path, free_port())
    assert result.code == 0, str(result)
    assert answered and await asyncio.wait_for(answered[0].wait_ended(), 5) == "remote_bye"
    assert answered[0].negotiated.codec == "PCMU"
    pcm = np.concatenate(frames)
    loud = pcm[np.abs(pcm) > 1000]
    assert len(loud) > 4000, "less than half a second of the tone arrived"
    start = int(np.argmax(np.abs(pcm) > 1000))
    assert abs(dominant_frequency(pcm[start:start + 8000]) - 440) < 15
