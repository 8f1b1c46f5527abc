"""LIVEKIT_URL / KEY / SECRET read and checked together; the agent's self-minted token verifies with the SDK's
own `TokenVerifier` and carries exactly the grants asked for."""

from __future__ import annotations

import jwt
import pytest
from livekit import api as lk
from pydantic import SecretStr

from parley.settings import Settings
from parley.telephony.livekit.config import LiveKitConfig, LiveKitConfigError


def _settings(url: str, key: str, secret: str) -> Settings:
    return Settings(_env_file=None, livekit_url=url, livekit_api_key=key,  # type: ignore[call-arg]
                    livekit_api_secret=SecretStr(secret))


@pytest.mark.parametrize(("url", "key", "secret", "words"), [
    ("", "k", "s", "LIVEKIT_URL is not set"),
    ("my.livekit.cloud", "k", "s", "is not a ws://, wss://, http:// or https:// URL"),
    ("wss://x.livekit.cloud", "", "s", "LIVEKIT_API_KEY is not set"),
    ("wss://x.livekit.cloud", "APIk", " ", "LIVEKIT_API_SECRET is not set: copy the API secret that goes with key 'APIk'"),
])
def test_bad_settings_name_the_setting(url: str, key: str, secret: str, words: str) -> None:
    with pytest.raises(LiveKitConfigError, match=words):
        LiveKitConfig.from_settings(_settings(url, key, secret))


def test_urls_and_the_agent_token() -> None:
    config = LiveKitConfig.from_settings(_settings("wss://x.livekit.cloud/", "APIk", "s" * 40))
    assert (config.http_url, config.ws_url) == ("https://x.livekit.cloud", "wss://x.livekit.cloud")
    assert LiveKitConfig("http://127.0.0.1:7880", "k", "s").ws_url == "ws://127.0.0.1:7880"
    token = config.token("parley-agent-r1", room="r1", room_join=True, agent=True, metadata='{"parley": true}')
    claims = lk.TokenVerifier("APIk", "s" * 40).verify(token)
    assert claims.identity == "parley-agent-r1" and claims.kind == "agent" and claims.metadata == '{"parley": true}'
    v = claims.video
    assert (v.room, v.room_join, v.can_publish, v.can_subscribe, v.can_publish_data) == ("r1", True, True, True, True)
    assert not v.room_admin and not v.room_list and not claims.sip.admin
    with pytest.raises(jwt.InvalidSignatureError):
        lk.TokenVerifier("APIk", "another-secret" * 3).verify(token)
