"""A real `Conversation` over a `RoomChannel` (no server): the caller's audio enters as the SDK's 10 ms 48 kHz
`AudioFrame`s, in real time, through the path `AudioStream` frames take; the agent's reply plays out through a
native `AudioSource`. The engine's deterministic providers (tests/engine/fakes.py) make the words exact; what
is checked is the channel's contract as the engine relies on it: media timestamps, turn detection on them, the
reply played out in full, and the end of the call."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc

from parley.engine.conversation import Conversation
from parley.engine.events import ConversationEnded, Event, TranscriptEntry
from parley.telephony.livekit.channel import RoomChannel
from parley.telephony.livekit.config import LiveKitConfig
from tests.engine.fakes import CallerAudio, EnergyVAD, ScriptLLM, ToneSTT, ToneTTS, agent_spec

pytestmark = [pytest.mark.realtime, pytest.mark.timeout(60)]
WORDS = {300: "tell me about your opening hours", 500: ""}
REPLY = "We are open from nine to five."


async def test_a_turn_and_its_reply_over_the_room_channel() -> None:
    channel = RoomChannel(LiveKitConfig("ws://127.0.0.1:9", "k", "s" * 40), "room", sample_rate=16_000)
    channel.start_output(rtc.AudioSource(48_000, 1, queue_size_ms=100))
    events: list[Event] = []
    tts = ToneTTS()
    conversation = Conversation(agent_spec(), channel, stt=ToneSTT(WORDS), llm=ScriptLLM([REPLY]), tts=tts,
                                vad=EnergyVAD(), system_prompt="You are a test agent.", greeting="",
                                on_event=events.append)
    run = asyncio.create_task(conversation.run())
    caller = CallerAudio(6, rate=48_000).say(300, 0.5, 1.0).pcm
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(0, caller.size, 480):  # 10 ms SDK frames, on the caller's real-time clock
        await asyncio.sleep(max(0.0, start + i / 48_000 - loop.time()))
        channel.feed(rtc.AudioFrame(caller[i : i + 480].tobytes(), 48_000, 1, 480))
        if any(isinstance(e, TranscriptEntry) and e.role == "agent" for e in events):
            break
    await asyncio.wait_for(channel.drain(), 10)
    played = channel.played_samples
    await channel.hangup("caller_hangup")
    reason = await asyncio.wait_for(run, 10)

    said = [(e.role, e.text) for e in events if isinstance(e, TranscriptEntry)]
    assert said == [("user", "tell me about your opening hours"), ("agent", REPLY)]
    user = next(e for e in events if isinstance(e, TranscriptEntry) and e.role == "user")
    assert 0.4 <= user.start <= 0.7 and 1.4 <= user.end <= 1.7  # media time = the caller's time
    agent = next(e for e in events if isinstance(e, TranscriptEntry) and e.role == "agent")
    assert 1.8 <= agent.start <= 2.6
    assert played == pytest.approx(tts.samples_for(REPLY) * 16_000 // tts.sample_rate, rel=0.05)
    assert reason in ("caller_hangup", "input_ended") and any(isinstance(e, ConversationEnded) for e in events)
