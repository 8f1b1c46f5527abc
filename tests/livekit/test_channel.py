"""`RoomChannel` without a server: its output into the SDK's native `AudioSource` (real-time playout, the
`played_samples` the engine relies on, barge-in, drain), its inbound clock, and DTMF from the SDK's `SipDTMF`.
Joining, subscribing and publishing need a real server (test_live.py)."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc

from parley.engine.channel import AudioFrame, DtmfEvent
from parley.telephony.livekit.channel import RoomChannel
from parley.telephony.livekit.config import LiveKitConfig

CONFIG = LiveKitConfig("ws://127.0.0.1:9", "APIkey", "s" * 40)


def tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    return (8000 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.int16)


async def test_agent_audio_plays_out_in_real_time_and_barge_in_clears_it() -> None:
    channel = RoomChannel(CONFIG, "room", sample_rate=16_000)
    channel.start_output(rtc.AudioSource(48_000, 1, queue_size_ms=100))
    try:
        await channel.write(tone(1.0))
        assert 900 <= channel.output_queued_ms <= 1000
        await asyncio.sleep(0.5)
        played = channel.played_samples
        assert 16_000 * 0.3 <= played <= 16_000 * 0.6, played  # real time, not as fast as possible
        dropped = channel.clear_output()
        assert dropped > 16_000 * 0.3 and channel.output_queued_ms == 0
        after = channel.played_samples
        await asyncio.sleep(0.2)
        assert channel.played_samples == after  # nothing more was played after the barge-in
        loop = asyncio.get_running_loop()
        start = loop.time()
        await channel.write(tone(0.3))
        await asyncio.wait_for(channel.drain(), 2)
        assert loop.time() - start >= 0.25 and channel.played_samples >= after + 16_000 * 0.25
    finally:
        await channel.hangup("agent_ended")
    assert channel.closed and channel.end_reason == "agent_ended"


async def test_inbound_keeps_real_time_with_silence_and_carries_dtmf() -> None:
    channel = RoomChannel(CONFIG, "room", sample_rate=16_000, frame_ms=20)
    items: list[AudioFrame | DtmfEvent] = []

    async def read() -> None:
        async for item in channel.inbound():
            items.append(item)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.5)
    channel._on_dtmf(rtc.SipDTMF(code=11, digit="#"))  # as the SDK calls it for a sip_dtmf packet
    channel._on_dtmf(rtc.SipDTMF(code=5, digit=""))
    await asyncio.sleep(0.1)
    await channel.hangup("agent_ended")
    await asyncio.wait_for(reader, 2)  # the iterator ends with the call
    frames = [i for i in items if isinstance(i, AudioFrame)]
    assert 20 <= len(frames) <= 32, len(frames)  # ~50 frames a second of silence, no caller yet
    assert all(f.pcm.size == 320 and not f.pcm.any() for f in frames)
    assert [f.timestamp for f in frames[:3]] == [0.0, 0.02, 0.04]
    assert [(d.digit) for d in items if isinstance(d, DtmfEvent)] == ["#", "5"]
