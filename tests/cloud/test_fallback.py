"""Fallback chains built from agent YAML: a cloud provider that fails hands the turn to the next one.

Real providers on both sides: the cloud ones through their SDKs against the stand-ins, the offline
ones (scripted LLM, espeak-ng, Whisper) as shipped.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from parley.agents.spec import AgentSpec, LLMSpec, STTSpec, TTSSpec
from parley.media.wav import read_wav
from parley.providers.base import Message, ProviderError, Transcript
from parley.providers.factory import build_llm, build_stt, build_tts
from parley.providers.fallback import FailoverEvent, FallbackLLM, FallbackSTT, FallbackTTS

from .conftest import rms
from .standins.server import Reply

pytestmark = pytest.mark.realtime  # timeouts of seconds: make test runs it in the foreground half


@pytest.fixture
def receptionist(root):  # type: ignore[no-untyped-def]
    from parley.agents import AgentRegistry

    return AgentRegistry.load(root / "agents", root / "prompts").get("receptionist").spec


def ask(text: str) -> list[Message]:
    return [Message("system", "You are Ava."), Message("user", text)]


async def reply(llm, text: str) -> str:  # type: ignore[no-untyped-def]
    return "".join([c.text async for c in llm.chat(ask(text))])


def chain_spec(**primary) -> LLMSpec:  # type: ignore[no-untyped-def]
    return LLMSpec.model_validate({"provider": "openai", "model": "standin-model", "retries": 0, **primary,
                                   "fallbacks": [{"provider": "scripted"}]})


async def test_primary_fails_mid_call_and_the_scripted_agent_answers_that_turn(
        cloud_settings, openai_server, receptionist: AgentSpec) -> None:
    llm = build_llm(chain_spec(), cloud_settings, agent=receptionist)
    assert isinstance(llm, FallbackLLM)
    events: list[FailoverEvent] = []
    llm.add_listener(events.append)

    assert await reply(llm, "Hello?") == "Hello from the stand-in. How can I help?"  # turn 1: primary
    openai_server.plan("chat", Reply(status=500, error_message="The server had an error"))
    answer = await reply(llm, "What are your opening hours?")  # turn 2: primary breaks
    assert answer == "We're open Monday to Friday, from nine in the morning to five in the afternoon."
    assert len(events) == 1
    assert events[0].failed.startswith("openai@127.0.0.1") and events[0].next == "scripted"
    assert "HTTP 500" in events[0].reason and "The server had an error" in events[0].reason
    assert "takes over" in events[0].describe()

    asked = len(openai_server.requests_of("chat"))
    assert (await reply(llm, "I would like to book an appointment")).startswith("Sure, I can book that")
    assert len(openai_server.requests_of("chat")) == asked, "a provider that just failed is tried last"


async def test_slow_first_token_hands_over_within_the_timeout(cloud_settings, openai_server, receptionist) -> None:
    llm = build_llm(chain_spec(first_token_timeout_s=2.0, fallback_cooldown_s=0), cloud_settings, agent=receptionist)
    openai_server.plan("chat", Reply(text="Too late", first_delay_s=8))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert "open Monday to Friday" in await reply(llm, "When are you open?")
    assert loop.time() - started < 5
    assert "no response within 2 s" in llm.events[-1].reason
    failovers = len(llm.events)
    answer = await reply(llm, "Hi")  # no cooldown: the primary again
    assert answer == "Hello from the stand-in. How can I help?", [e.describe() for e in llm.events][failovers:]


async def test_every_provider_failing_raises_with_each_reason(cloud_settings, openai_server, receptionist) -> None:
    spec = LLMSpec.model_validate({
        "provider": "openai", "model": "standin-model", "retries": 0,
        "fallbacks": [{"provider": "azure_openai", "retries": 0}]})
    llm = build_llm(spec, cloud_settings, agent=receptionist)
    openai_server.plan("chat", Reply(status=503))
    openai_server.plan("azure_chat", Reply(status=429))
    with pytest.raises(ProviderError, match="every llm provider failed") as info:
        await reply(llm, "Hello?")
    assert "HTTP 503" in str(info.value) and "rate limited" in str(info.value)
    assert info.value.component == "llm" and info.value.provider == llm.name
    assert [(e.next, e.failed) for e in llm.events] == [("azure_openai", llm.providers[0].name), (None, "azure_openai")]


async def test_no_switch_after_words_were_handed_on(cloud_settings, openai_server, receptionist) -> None:
    llm = build_llm(chain_spec(), cloud_settings, agent=receptionist)
    openai_server.plan("chat", Reply(text="Let me check our opening hours for you right away.", drop_after=3))
    heard = ""
    with pytest.raises(ProviderError, match="stream broke") as info:
        async for chunk in llm.chat(ask("When are you open?")):
            heard += chunk.text
    assert heard == "Let me check"  # the scripted agent did not start a second answer on top
    assert info.value.component == "llm"
    assert llm.events[-1].next is None


async def test_tts_falls_back_to_espeak_at_the_primary_rate(cloud_settings, azure_tts_server) -> None:
    spec = TTSSpec.model_validate({"provider": "azure", "voice": "en-US-JennyNeural", "sample_rate": 8000,
                                   "endpoint": azure_tts_server.base_url, "retries": 0,
                                   "fallbacks": [{"provider": "espeak", "voice": "en-us"}]})
    tts = build_tts(spec, cloud_settings)
    assert isinstance(tts, FallbackTTS) and tts.sample_rate == 8000
    azure_tts_server.plan("azure_tts", Reply(status=500))
    audio = np.concatenate([pcm async for pcm in tts.synthesize("Sorry, I am having trouble right now.")])
    assert 1.0 < len(audio) / 8000 < 6 and rms(audio) > 500
    assert tts.events[-1].failed == "azure" and tts.events[-1].next == "espeak"
    assert "HTTP 500" in tts.events[-1].reason


async def test_tts_chain_for_a_call_rate_follows_the_first_voice(cloud_settings, azure_tts_server) -> None:
    spec = TTSSpec.model_validate({"provider": "azure", "voice": "en-US-JennyNeural",
                                   "endpoint": azure_tts_server.base_url,
                                   "fallbacks": [{"provider": "espeak", "voice": "en-us"}]})
    tts = build_tts(spec, cloud_settings)
    assert isinstance(tts, FallbackTTS) and tts.sample_rate == 24000
    assert 8000 in tts.capabilities.sample_rates
    phone = tts.for_rate(8000)
    assert isinstance(phone, FallbackTTS) and phone.sample_rate == 8000 and phone.providers[0].sample_rate == 8000
    assert phone.providers[1] is tts.providers[1]  # espeak has one rate: resampled inside the chain
    assert tts.for_rate(24000) is tts and tts.for_rate(11025) is tts  # nothing to change


async def test_stt_hands_the_kept_utterance_to_the_offline_engine(cloud_settings, openai_server, speech_wav) -> None:
    spec = STTSpec.model_validate({"provider": "openai", "language": "en", "retries": 0,
                                   "fallbacks": [{"provider": "pocketsphinx", "language": "en"}]})
    stt = build_stt(spec, cloud_settings)
    assert isinstance(stt, FallbackSTT)
    pcm, _rate = read_wav(speech_wav("I would like to book an appointment", engine="piper", rate=16000))
    openai_server.plan("transcribe", Reply(status=500, error_message="upstream failure"),
                       Reply(status=500, error_message="upstream failure"))
    stream = stt.stream()
    for start in range(0, len(pcm), 320):
        await stream.push(pcm[start:start + 320])
    assert await stream.snapshot() == Transcript("", False)  # a failed snapshot is no opinion, not a failover
    assert not stt.events
    result = await stream.end_utterance()
    assert "appointment" in result.text.lower()
    assert stream.provider.name == "pocketsphinx"
    assert stt.events[-1].failed == "openai" and stt.events[-1].next == "pocketsphinx"
    assert "upstream failure" in stt.events[-1].reason
    await stream.close()


async def test_failovers_reach_the_listener_of_the_call_they_happen_in(cloud_settings, openai_server, receptionist) -> None:
    from parley.providers.fallback import listen_in_context

    llm = build_llm(chain_spec(fallback_cooldown_s=0), cloud_settings, agent=receptionist)  # shared by two calls
    heard: dict[str, list[FailoverEvent]] = {"a": [], "b": []}

    async def call(name: str, fail: bool) -> str:
        listen_in_context(heard[name].append)
        if fail:
            openai_server.plan("chat", Reply(status=502))
        return await reply(llm, "What are your opening hours?")

    first = await asyncio.create_task(call("a", fail=True))
    second = await asyncio.create_task(call("b", fail=False))
    assert first.startswith("We're open") and second == "Hello from the stand-in. How can I help?"
    assert [e.next for e in heard["a"]] == ["scripted"] and heard["b"] == []
