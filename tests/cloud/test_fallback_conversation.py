"""Fallbacks inside a whole conversation: the engine's `Conversation` over its file channel (an 8 kHz phone
path), with the real Silero VAD, the cloud providers through their SDKs against the stand-ins and the
offline scripted agent / espeak-ng behind them.
"""

from __future__ import annotations

import numpy as np
import pytest

from parley.agents.spec import LLMSpec, STTSpec, TTSSpec
from parley.engine.events import ConversationEnded, ConversationStarted, ProviderFailed
from parley.engine.session import Engines, talk_file
from parley.media.wav import read_wav
from parley.providers.factory import build_llm, build_stt, build_tts
from parley.providers.fallback import FailoverEvent
from parley.providers.text import speech_pieces

from ..conftest import synth_espeak
from .standins.server import Reply

RATE = 8000
pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


# Media time runs SPEED times faster than the wall clock, so provider latency looks SPEED times longer; the
# gap between the caller's lines leaves the agent's answer (about 2.5 s of audio) room to finish even on a
# loaded machine (7 s was too short once in CI: the caller's next line cut the answer's second sentence).
SPEED = 3
GAP_S = 10.0


def caller(tmp_path, lines: list[str]):  # type: ignore[no-untyped-def]
    """The caller's side of the call: each line spoken by espeak-ng, GAP_S of silence between lines."""
    parts = [np.zeros(RATE // 2, np.int16)]
    for i, line in enumerate(lines):
        pcm, _ = read_wav(synth_espeak(line, tmp_path / f"line{i}.wav", rate=RATE))
        gap = GAP_S if i < len(lines) - 1 else 1.0
        parts += [pcm, np.zeros(int(gap * RATE), np.int16)]
    return np.concatenate(parts)


def engines(agent, settings, llm_spec: LLMSpec, azure_tts_url: str) -> Engines:  # type: ignore[no-untyped-def]
    tts_spec = TTSSpec.model_validate({"provider": "azure", "voice": "en-US-JennyNeural", "sample_rate": RATE,
                                       "endpoint": azure_tts_url, "retries": 0,
                                       "fallbacks": [{"provider": "espeak", "voice": "en-us"}]})
    return Engines(agent=agent, settings=settings,
                   stt=build_stt(STTSpec(provider="openai", language="en"), settings),
                   llm=build_llm(llm_spec, settings, agent=agent.spec), tts=build_tts(tts_spec, settings))


@pytest.fixture
def receptionist(root):  # type: ignore[no-untyped-def]
    from parley.agents import AgentRegistry

    return AgentRegistry.load(root / "agents", root / "prompts").get("receptionist")


async def test_cloud_llm_fails_mid_call_and_the_scripted_agent_answers_that_turn(
        cloud_settings, openai_server, azure_tts_server, receptionist, tmp_path) -> None:
    llm_spec = LLMSpec.model_validate({"provider": "openai", "model": "standin-model", "retries": 0,
                                       "fallbacks": [{"provider": "scripted"}]})
    eng = engines(receptionist, cloud_settings, llm_spec, azure_tts_server.base_url)
    timeline: list[object] = []
    eng.llm.add_listener(timeline.append)
    eng.tts.add_listener(timeline.append)
    openai_server.plan("transcribe", Reply(text="Hello there."), Reply(text="What are your opening hours?"))
    openai_server.plan("chat", Reply(text="Hello from the cloud model. How can I help?"),
                       Reply(status=500, error_message="The server had an error"))
    # the first answer is two sentences (two TTS requests); the voice fails on the second answer
    azure_tts_server.plan("azure_tts", Reply(), Reply(), Reply(status=503))

    talk = await talk_file(eng, caller(tmp_path, ["Hello there", "What are your opening hours"]), RATE,
                           speed=SPEED, on_event=timeline.append)

    agent_lines = [e.text for e in talk.transcript if e.role == "agent"]
    assert [e.text for e in talk.transcript if e.role == "user"] == ["Hello there.", "What are your opening hours?"]
    assert agent_lines[0] == "Hello from the cloud model. How can I help?"
    assert agent_lines[1].startswith("We're open Monday to Friday")  # the scripted agent, same turn
    assert not [e for e in talk.events if isinstance(e, ProviderFailed)], "no apology: the fallback answered"
    failovers = [e for e in timeline if isinstance(e, FailoverEvent)]
    assert [(f.kind, f.next) for f in failovers] == [("llm", "scripted"), ("tts", "espeak")]
    assert "HTTP 500" in failovers[0].reason and "HTTP 503" in failovers[1].reason
    # both answers were heard: agent audio well beyond the first answer alone
    assert len(talk.audio) / RATE > 4.0
    assert len(openai_server.requests_of("chat")) == 2
    # the STT got each utterance as audio of about the spoken length
    assert all(0.5 < r["seconds"] < 4 for r in openai_server.requests_of("transcribe"))


async def test_every_llm_failing_apologises_then_hangs_up_politely(
        cloud_settings, openai_server, azure_tts_server, receptionist, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BAD_OPENAI_KEY", "sk-revoked")
    bad_azure = cloud_settings.model_copy(
        update={"azure_openai_api_key": type(cloud_settings.azure_openai_api_key)("revoked")})
    llm_spec = LLMSpec.model_validate({"provider": "openai", "model": "standin-model", "api_key_env": "BAD_OPENAI_KEY",
                                       "fallbacks": [{"provider": "azure_openai"}]})
    eng = engines(receptionist, bad_azure, llm_spec, azure_tts_server.base_url)
    lines = ["Hello there", "Can you hear me", "Is anybody there"]
    talk = await talk_file(eng, caller(tmp_path, lines), RATE, speed=SPEED)

    apology = receptionist.spec.apology
    assert talk.reason == "provider_error"
    failures = [e for e in talk.events if isinstance(e, ProviderFailed)]
    assert len(failures) == 3 and all("every llm provider failed" in f.message for f in failures)
    assert "API key was rejected" in failures[0].message
    users = [e for e in talk.transcript if e.role == "user"]
    agents = [e for e in talk.transcript if e.role == "agent"]
    assert len(users) == 3 and [a.text for a in agents] == [apology] * 3  # two apologies, then the goodbye line
    assert not agents[-1].interrupted
    # the record is complete: started, every turn, ended with the reason
    assert isinstance(talk.events[0], ConversationStarted)
    ended = [e for e in talk.events if isinstance(e, ConversationEnded)]
    assert len(ended) == 1 and ended[0].reason == "provider_error" and ended[0].turns >= 3
    assert isinstance(talk.events[-1], ConversationEnded)
    # the last apology was spoken to its end before the hang-up; each in its speech pieces, "Sorry," and the
    # rest, and "Sorry," (a phrase replies often open with) synthesized once, then from the cache
    opening, rest = speech_pieces(apology)
    assert [r["text"] for r in azure_tts_server.requests_of("azure_tts")] == [opening, rest, rest, rest]
    assert agents[-1].end <= ended[0].duration_s + 0.05
    assert len(talk.audio) / RATE > 3 * 1.0
