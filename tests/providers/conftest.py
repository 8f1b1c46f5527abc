"""Fixtures for the offline provider tests: one Whisper model of each size per session, the receptionist agent,
and a telephone path (16 kHz → 8 kHz → G.711 μ-law when the codec module exists → 16 kHz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from parley.agents.spec import AgentSpec
from parley.media.wav import read_wav

from .helpers import telephone

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def phone_speech(speech_wav):  # type: ignore[no-untyped-def]
    """Factory: `phone_speech(text, engine)` → 16 kHz int16 speech that went through the telephone path."""

    def make(text: str, engine: str = "piper") -> np.ndarray:
        pcm, rate = read_wav(speech_wav(text, engine=engine, rate=16000))
        return telephone(pcm, rate)

    return make


@pytest.fixture(scope="session")
def whisper_stt(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The bundled Whisper base, assembled into a session data dir and loaded once."""
    from parley.providers.stt.whisper import WhisperSTT

    return WhisperSTT(model="base", data_dir=tmp_path_factory.mktemp("whisper-data"), language="en", threads=2)


@pytest.fixture(scope="session")
def tiny_en_stt(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Whisper tiny.en from its registry package (hashes checked at load), loaded once."""
    from parley.providers.stt.whisper import WhisperSTT

    return WhisperSTT(model="tiny.en", data_dir=tmp_path_factory.mktemp("whisper-data"), language="en", threads=2)


@pytest.fixture(scope="session")
def receptionist() -> AgentSpec:
    """The shipped default agent."""
    return AgentSpec.model_validate(yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text()))
