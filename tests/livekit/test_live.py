"""End to end against a REAL LiveKit server: runs when LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET
point at one (e.g. `livekit-server --dev`: ws://127.0.0.1:7880, devkey / secret), skipped otherwise.

No LiveKit server can run on the project's machines, so these have NOT been run there (docs/livekit.md).
What they exercise: the signed server API round trip; `sip ensure` twice on the real SIP service (needs SIP
enabled on the server); the room media path of `RoomChannel` with a second SDK participant as the caller:
caller audio → engine frames, agent audio → the caller, DTMF both ways, hang-up by removing the caller.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from parley.settings import Settings
from parley.telephony.livekit.config import LiveKitConfig

pytestmark = [pytest.mark.live]

if not (os.environ.get("LIVEKIT_URL") and os.environ.get("LIVEKIT_API_KEY")
        and os.environ.get("LIVEKIT_API_SECRET")):
    pytest.skip("needs a real LiveKit server: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET "
                "(none can run on the project's machines)", allow_module_level=True)


@pytest.fixture
def config() -> LiveKitConfig:
    return LiveKitConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


def _peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * rate / pcm.size)


async def test_signed_round_trip(config: LiveKitConfig) -> None:
    from parley.telephony.livekit.doctor import list_rooms

    assert await list_rooms(config) >= 0


async def test_sip_ensure_twice_on_the_real_sip_service(config: LiveKitConfig) -> None:
    from parley.telephony.livekit import sip_sync
    from parley.telephony.trunks import TelephonyConfig

    name = f"parley-live-{uuid.uuid4().hex[:8]}"
    conf = TelephonyConfig.model_validate({
        "trunks": [{"name": name, "inbound": {"allowed_addresses": ["203.0.113.7"], "numbers": ["+15550100999"]},
                    "outbound": {"host": "sip.example.invalid", "username": "u", "password": "p",
                                 "caller_id": "+15550100999", "from_user": "username"}}],
        "dispatch_rules": [{"name": name, "numbers": ["+15550100999"], "trunks": [name], "agent": "receptionist"}]})
    want = sip_sync.desired(conf)
    client = config.api()
    try:
        have, _ = await sip_sync.read(client)
        await sip_sync.apply(client, sip_sync.plan(want, have, only={name}))
        have, _ = await sip_sync.read(client)
        second = sip_sync.plan(want, have, only={name})
        assert [c.action for c in second] == ["unchanged"] * 3, [c.describe() for c in second]
    finally:
        await sip_sync.delete(client, {name})
        await client.aclose()


async def test_room_channel_media_dtmf_and_hangup(config: LiveKitConfig, tmp_path: Path) -> None:
    from livekit import rtc

    from parley.engine.channel import AudioFrame, DtmfEvent
    from parley.telephony.livekit.audio import OutboundAudio, to_mono
    from parley.telephony.livekit.channel import RoomChannel

    room_name = f"parley-live-{uuid.uuid4().hex[:8]}"
    caller = rtc.Room()
    await caller.connect(config.ws_url, config.token("live-caller", room=room_name, room_join=True))
    source = rtc.AudioSource(48_000, 1)
    await caller.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("mic", source))
    heard: list[np.ndarray] = []

    def on_track(track: rtc.Track, *_: object) -> None:
        async def listen() -> None:
            async for ev in rtc.AudioStream(track, sample_rate=48_000):
                heard.append(to_mono(ev.frame).copy())
        asyncio.ensure_future(listen())

    caller.on("track_subscribed", on_track)
    channel = await RoomChannel.join(config, room_name, sample_rate=16_000)
    try:
        assert await channel.wait_for_caller(10) == "live-caller"

        async def speak() -> None:  # the caller says 440 Hz for 2 s, then presses 5
            out = OutboundAudio(16_000)
            t = np.arange(32_000) / 16_000
            for frame in out.push((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)) + out.flush():
                await source.capture_frame(frame)
            await caller.local_participant.publish_dtmf(code=5, digit="5")

        speaking = asyncio.create_task(speak())
        t = np.arange(16_000) / 16_000
        await channel.write((8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16))  # the agent: 1 kHz, 1 s
        frames: list[np.ndarray] = []
        digits: list[str] = []
        async for item in channel.inbound():
            if isinstance(item, AudioFrame):
                frames.append(item.pcm)
            elif isinstance(item, DtmfEvent):
                digits.append(item.digit)
                break
            if len(frames) > 500:
                break
        await speaking
        assert digits == ["5"]
        pcm = np.concatenate(frames)
        loud = pcm[np.abs(pcm) > 2000]
        assert loud.size > 8000 and abs(_peak_hz(pcm[-16000:], 16_000) - 440) < 10
        assert channel.played_samples > 12_000
        agent = np.concatenate(heard)
        assert abs(_peak_hz(agent[np.abs(agent) > 0][:24_000], 48_000) - 1000) < 10
        await channel.hangup("agent_ended")
        assert channel.end_reason == "agent_ended"
        assert "live-caller" not in [p.identity for p in caller.remote_participants.values()]
    finally:
        await channel.hangup("test_end")
        await caller.disconnect()
