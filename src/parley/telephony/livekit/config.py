"""Where the LiveKit server is and how to sign for it: `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`.

`LiveKitConfig.from_settings` checks the three together and says in words what is missing or wrong;
`token()` mints an access token (HS256 with the secret, `iss` = the key) with the grants asked for.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from parley.settings import Settings

if TYPE_CHECKING:
    from livekit import api as lkapi


class LiveKitConfigError(ValueError):
    """LiveKit settings that cannot work; the message names the setting and the fix."""


@dataclass(frozen=True)
class LiveKitConfig:
    """A LiveKit server: `url` (ws(s):// or http(s)://), API `key` and `secret`."""

    url: str
    key: str
    secret: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveKitConfig:
        """The configured server; `LiveKitConfigError` naming the first missing or malformed setting."""
        url = settings.livekit_url.strip()
        key = settings.livekit_api_key.strip()
        secret = settings.livekit_api_secret.get_secret_value().strip()
        if not url:
            raise LiveKitConfigError("LIVEKIT_URL is not set: set it to your server, e.g. wss://my.livekit.cloud")
        parsed = urlparse(url)
        if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.netloc:
            raise LiveKitConfigError(f"LIVEKIT_URL {url!r} is not a ws://, wss://, http:// or https:// URL")
        if not key:
            raise LiveKitConfigError("LIVEKIT_API_KEY is not set: copy the API key from your LiveKit project")
        if not secret:
            raise LiveKitConfigError("LIVEKIT_API_SECRET is not set: copy the API secret that goes with "
                                     f"key {key!r}")
        return cls(url.rstrip("/"), key, secret)

    @property
    def http_url(self) -> str:
        """The server API base (Twirp): the URL with ws→http, wss→https."""
        return "http" + self.url[2:] if self.url.startswith("ws") else self.url

    @property
    def ws_url(self) -> str:
        """The real-time (signal) URL: http→ws, https→wss."""
        return "ws" + self.url[4:] if self.url.startswith("http") else self.url

    def token(self, identity: str, *, name: str = "", room: str | None = None, room_join: bool = False,
              room_admin: bool = False, room_list: bool = False, sip_admin: bool = False, sip_call: bool = False,
              metadata: str = "", agent: bool = False, ttl_s: int = 3600) -> str:
        """A signed access token for `identity` with exactly the grants asked for."""
        from livekit import api as lk

        _quiet_short_secrets()
        grants = lk.VideoGrants(room=room or "", room_join=room_join, room_admin=room_admin,
                                room_list=room_list, can_publish=room_join, can_subscribe=room_join,
                                can_publish_data=room_join)
        tok = (lk.AccessToken(self.key, self.secret).with_identity(identity).with_name(name or identity)
               .with_grants(grants).with_ttl(datetime.timedelta(seconds=ttl_s)))
        if metadata:
            tok = tok.with_metadata(metadata)
        if agent:
            tok = tok.with_kind("agent")  # others (webhooks, agent frameworks, UIs) see an agent participant
        if sip_admin or sip_call:
            tok = tok.with_sip_grants(lk.SIPGrants(admin=sip_admin, call=sip_call))
        return tok.to_jwt()

    def api(self) -> lkapi.LiveKitAPI:
        """A server-API client (close it with `await client.aclose()`); no fail-over to other regions."""
        from livekit import api as lk

        _quiet_short_secrets()
        return lk.LiveKitAPI(self.http_url, self.key, self.secret, failover=False)


def _quiet_short_secrets() -> None:
    """PyJWT warns on every token signed with a secret under 32 bytes; LiveKit decides what it accepts (a
    wrong secret is explained by `doctor.explain`), so the warning is noise on every command."""
    import warnings

    from jwt.warnings import InsecureKeyLengthWarning

    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
