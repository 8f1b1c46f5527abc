"""Fixtures for the cloud-provider tests: stand-in servers on 127.0.0.1 and settings pointing at them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from .standins.azure_stt_server import AzureSTTStandIn
from .standins.azure_tts_server import AzureTTSStandIn
from .standins.openai_server import OpenAIStandIn

OPENAI_KEY = "sk-test"
AZURE_OPENAI_KEY = "azure-test"
SPEECH_KEY = "speech-test"


@pytest.fixture(scope="module")
def _openai_server() -> Iterator[OpenAIStandIn]:
    server = OpenAIStandIn(api_key=OPENAI_KEY, azure_key=AZURE_OPENAI_KEY)
    server.base_url = server.start()  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def openai_server(_openai_server: OpenAIStandIn) -> OpenAIStandIn:
    """The OpenAI-compatible stand-in (also serving Azure OpenAI's deployment routes), state cleared."""
    _openai_server.reset()
    _openai_server.default_transcript = "hello world"
    return _openai_server


@pytest.fixture(scope="module")
def _azure_tts_server() -> Iterator[AzureTTSStandIn]:
    server = AzureTTSStandIn(key=SPEECH_KEY)
    server.base_url = server.start()  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def azure_tts_server(_azure_tts_server: AzureTTSStandIn) -> AzureTTSStandIn:
    """The Azure Speech TTS REST stand-in, state cleared."""
    _azure_tts_server.reset()
    return _azure_tts_server


@pytest.fixture(scope="module")
def _azure_stt_server() -> Iterator[AzureSTTStandIn]:
    server = AzureSTTStandIn(key=SPEECH_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def azure_stt_server(_azure_stt_server: AzureSTTStandIn) -> AzureSTTStandIn:
    """The Azure Speech recognition WebSocket stand-in (the real SDK connects to `.endpoint`), state cleared."""
    _azure_stt_server.phrases.clear()
    _azure_stt_server.sessions.clear()
    _azure_stt_server.reject_with = None
    _azure_stt_server.drop_after_s = None
    _azure_stt_server.handshake_delay_s = 0.0
    return _azure_stt_server


@pytest.fixture
def cloud_settings(settings, openai_server, monkeypatch):  # type: ignore[no-untyped-def]
    """Settings whose OpenAI and Azure OpenAI endpoints are the stand-in (no real keys in the env)."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
                 "AZURE_OPENAI_DEPLOYMENT_NAME", "AZURE_SPEECH_KEY", "AZURE_SPEECH_REGION"):
        monkeypatch.delenv(name, raising=False)
    return settings.model_copy(update={
        "openai_api_key": _secret(OPENAI_KEY),
        "openai_base_url": openai_server.base_url + "/v1",
        "azure_openai_api_key": _secret(AZURE_OPENAI_KEY),
        "azure_openai_endpoint": openai_server.base_url,
        "azure_openai_deployment_name": "gpt-4o-parley",
        "azure_speech_key": _secret(SPEECH_KEY),
        "azure_speech_region": "westeurope",
    })


def _secret(value: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    return SecretStr(value)


def rms(pcm: np.ndarray) -> float:
    """Root-mean-square level of int16 audio (speech from espeak-ng is well above 500)."""
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
