"""`check_provider` (used by `parley doctor`): one tiny real request per configured provider."""

from __future__ import annotations

import pytest

from parley.agents.spec import LLMSpec, STTSpec, TTSSpec
from parley.providers.check import check_component, check_provider

from .standins.server import Reply


async def test_healthy_cloud_providers_report_latency(cloud_settings, openai_server, azure_tts_server) -> None:
    llm = await check_provider("llm", LLMSpec(provider="openai", model="standin-model"), cloud_settings)
    assert llm.ok and llm.latency_ms is not None and 0 < llm.latency_ms < 10_000
    assert "first token 'Hello'" in llm.message
    azure = await check_provider("llm", LLMSpec(provider="openai", model="azure_openai"), cloud_settings)
    assert azure.ok and openai_server.requests_of("azure_chat")
    tts = await check_provider("tts", TTSSpec(provider="azure", voice="de-DE-KatjaNeural",
                                              endpoint=azure_tts_server.base_url), cloud_settings)
    assert tts.ok and "first audio (24000 Hz)" in tts.message
    stt = await check_provider("stt", STTSpec(provider="openai"), cloud_settings)
    assert stt.ok and "silence" in stt.message


async def test_failures_are_reported_in_words(cloud_settings, openai_server, settings, monkeypatch) -> None:
    wrong = cloud_settings.model_copy(update={"openai_api_key": type(cloud_settings.openai_api_key)("sk-bad")})
    bad_key = await check_provider("llm", LLMSpec(provider="openai", model="m"), wrong)
    assert not bad_key.ok and bad_key.latency_ms is None and "API key was rejected" in bad_key.message

    openai_server.plan("chat", Reply(first_delay_s=5))
    slow = await check_provider("llm", LLMSpec(provider="openai", model="m", retries=0), cloud_settings, timeout_s=0.5)
    assert not slow.ok and "no answer within 0.5 s" in slow.message

    monkeypatch.delenv("AZURE_SPEECH_KEY", raising=False)
    monkeypatch.delenv("AZURE_SPEECH_REGION", raising=False)
    unset = await check_provider("tts", TTSSpec(provider="azure"), settings)
    assert not unset.ok and "set AZURE_SPEECH_KEY and AZURE_SPEECH_REGION" in unset.message


async def test_component_checks_every_fallback(cloud_settings, openai_server, root) -> None:
    from parley.agents import AgentRegistry

    agent = AgentRegistry.load(root / "agents", root / "prompts").get("receptionist").spec
    spec = LLMSpec.model_validate({"provider": "openai", "model": "m", "retries": 0,
                                   "fallbacks": [{"provider": "scripted"}]})
    openai_server.plan("chat", Reply(status=500))
    results = await check_component("llm", spec, cloud_settings, agent=agent)
    assert [(name, r.ok) for name, r in results] == [("openai", False), ("scripted", True)]
    assert "HTTP 500" in results[0][1].message


@pytest.mark.parametrize("kind", ["llm", "tts"])
async def test_unknown_provider_is_reported_not_raised(kind, settings) -> None:
    from parley.agents.spec import ComponentSpec

    result = await check_provider(kind, ComponentSpec(provider="nonexistent"), settings)
    assert not result.ok and "unknown" in result.message and "nonexistent" in result.message
