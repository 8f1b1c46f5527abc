"""Building providers by name from an agent's components."""

from __future__ import annotations

import pytest

from parley.agents.spec import AgentSpec, ComponentSpec, LLMSpec, STTSpec, TTSSpec, VADSpec
from parley.providers import factory
from parley.providers.base import LLM, STT, TTS, VAD


def test_receptionist_components_build_offline(receptionist: AgentSpec, settings) -> None:  # type: ignore[no-untyped-def]
    comps = receptionist.components
    stt = factory.build_stt(comps.stt, settings)
    llm = factory.build_llm(comps.llm, settings, agent=receptionist)
    tts = factory.build_tts(comps.tts, settings)
    vad = factory.build_vad(comps.vad, settings)
    assert isinstance(stt, STT) and stt.name == "whisper" and stt.sample_rate == 16000
    assert isinstance(llm, LLM) and llm.name == "scripted"
    assert isinstance(tts, TTS) and tts.name == "piper" and tts.sample_rate == 22050
    assert isinstance(vad, VAD) and vad.name == "silero" and vad.window_samples == 512
    assert not stt.capabilities.interim_results and stt.capabilities.sample_rates == (16000,)
    assert llm.capabilities.streaming and tts.capabilities.streaming
    assert vad.capabilities.sample_rates == (8000, 16000) and vad.threshold == comps.vad.threshold == 0.5


@pytest.mark.parametrize(
    "kind,spec,name",
    [
        ("stt", STTSpec(provider="pocketsphinx"), "pocketsphinx"),
        ("tts", TTSSpec(provider="espeak", language="de"), "espeak"),
        ("vad", VADSpec(provider="webrtc"), "webrtc"),
        ("llm", LLMSpec(provider="echo"), "echo"),
    ],
)
def test_other_offline_providers(kind: str, spec: ComponentSpec, name: str, settings, receptionist) -> None:  # type: ignore[no-untyped-def]
    built = factory.build(kind, spec, settings, script=receptionist)  # given to LLMs only; echo ignores it
    assert built.name == name and built.component == kind


def test_streaming_recognisers_say_so(settings) -> None:  # type: ignore[no-untyped-def]
    sphinx = factory.build_stt(STTSpec(provider="pocketsphinx"), settings)
    assert sphinx.capabilities.streaming and sphinx.capabilities.interim_results


def test_vad_threshold_and_the_call_rate(settings) -> None:  # type: ignore[no-untyped-def]
    assert factory.build_vad(VADSpec(provider="webrtc", threshold=0.7), settings).threshold == 0.7
    assert factory.build_vad(VADSpec(), settings, sample_rate=8000).sample_rate == 8000
    assert factory.build_vad(VADSpec(), settings, sample_rate=44100).sample_rate == 16000  # not offered: its own
    assert factory.build_vad(VADSpec(sample_rate=16000), settings, sample_rate=8000).sample_rate == 16000


def test_unknown_names_and_options_fail_clearly(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown tts provider 'nope'"):
        factory.build_tts(ComponentSpec(provider="nope"), settings)
    with pytest.raises(ValueError, match="piper: unknown option.*pitch"):
        factory.build_tts(TTSSpec(provider="piper", pitch=3), settings)
    with pytest.raises(ValueError, match="neither a bundled voice"):
        factory.build_tts(TTSSpec(provider="piper", voice="de_DE-nobody"), settings)
    with pytest.raises(ValueError, match="no voice 'xx-none'"):
        factory.build_tts(TTSSpec(provider="espeak", voice="xx-none"), settings)
    with pytest.raises(ValueError, match="neither an existing folder nor a size name"):
        factory.build_stt(STTSpec(provider="whisper", model="huge-v9"), settings)
    with pytest.raises(ValueError, match="does not know language 'xx'"):
        factory.build_stt(STTSpec(provider="whisper", language="xx"), settings)
    with pytest.raises(ValueError, match="only has a US English model"):
        factory.build_stt(STTSpec(provider="pocketsphinx", language="de"), settings)
    with pytest.raises(ValueError, match="8000 or 16000"):
        factory.build_vad(VADSpec(provider="silero", sample_rate=44100), settings)
    with pytest.raises(ValueError, match="needs the agent's intents"):
        factory.build_llm(LLMSpec(provider="scripted"), settings)


def test_whisper_model_setting_is_honoured(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "my-model"
    folder.mkdir()
    settings.whisper_model = str(folder)
    with pytest.raises(ValueError, match="has no model.bin"):
        factory.build_stt(STTSpec(provider="whisper"), settings)
    (folder / "model.bin").write_bytes(b"\0")
    assert factory.build_stt(STTSpec(provider="whisper"), settings).model == str(folder.resolve())
    settings.whisper_model = "tiny.en"
    assert factory.build_stt(STTSpec(provider="whisper"), settings).model == "tiny.en"


def test_english_agents_get_tiny_en_and_others_base(settings) -> None:  # type: ignore[no-untyped-def]
    settings.whisper_model = ""
    assert factory.build_stt(STTSpec(provider="whisper", language="en-US"), settings).model == "tiny.en"
    assert factory.build_stt(STTSpec(provider="whisper", language="de-DE"), settings).model == "bundled-base"
    assert factory.build_stt(STTSpec(provider="whisper", language="auto"), settings).model == "bundled-base"
    assert factory.build_stt(STTSpec(provider="whisper", model="base", language="en"), settings).model == "bundled-base"
    with pytest.raises(ValueError, match="only recognises English"):
        factory.build_stt(STTSpec(provider="whisper", model="tiny.en", language="de"), settings)
