"""`TwilioConfig`: the Twilio settings Parley needs, read once from `Settings`, with their problems in words."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from parley.settings import Settings

#: The paths Parley serves for Twilio (the router mounts them; TwiML and number setup point at them).
VOICE_PATH = "/twilio/voice"
STREAM_PATH = "/twilio/stream"
STATUS_PATH = "/twilio/status"


@dataclass(frozen=True)
class TwilioConfig:
    """Account credentials, the public base URL Twilio reaches us at, and the REST base (empty = Twilio's)."""

    account_sid: str
    auth_token: str
    phone_number: str = ""
    public_url: str = ""
    api_base_url: str = ""
    trunk_name: str = "parley"
    token_ttl_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioConfig:
        return cls(
            account_sid=settings.twilio_account_sid.strip(),
            auth_token=settings.twilio_auth_token.get_secret_value().strip(),
            phone_number=settings.twilio_phone_number.strip(),
            public_url=(settings.twilio_public_url or settings.public_url).strip().rstrip("/"),
            api_base_url=settings.twilio_api_base_url.strip().rstrip("/"),
            trunk_name=settings.twilio_trunk_name,
            token_ttl_s=settings.twilio_stream_token_ttl_s,
        )

    @property
    def has_credentials(self) -> bool:
        return bool(self.account_sid and self.auth_token)

    def problems(self) -> list[str]:
        """What is missing or wrong, one sentence each (empty when Twilio can be used)."""
        out = []
        if not self.account_sid:
            out.append("TWILIO_ACCOUNT_SID is not set (Twilio console → Account info)")
        elif not (self.account_sid.startswith("AC") and len(self.account_sid) == 34):
            out.append(f"TWILIO_ACCOUNT_SID {self.account_sid[:6]}… does not look like an account SID (AC + 32 hex)")
        if not self.auth_token:
            out.append("TWILIO_AUTH_TOKEN is not set: webhooks cannot be verified")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                out.append(f"TWILIO_PUBLIC_URL {self.public_url!r} is not an http(s):// URL")
        return out

    def public(self, path: str) -> str | None:
        """The public URL of `path` (None when no public URL is configured)."""
        return f"{self.public_url}{path}" if self.public_url else None

    def stream_url(self, base: str) -> str:
        """The wss:// (ws:// for plain http) URL of the stream endpoint under the http(s) `base`."""
        parts = urlsplit(base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{STREAM_PATH}"
