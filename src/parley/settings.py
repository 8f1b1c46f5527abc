"""Parley settings, read from the environment and an optional `.env` file.

The original project's variable names are kept (`AZURE_SPEECH_KEY`, `TWILIO_*`, `LIVEKIT_*`, …);
Parley's own are unprefixed and listed in `.env.example`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Shown instead of a secret's value in logs and `parley config`.
MASK = "********"


class Settings(BaseSettings):
    """Every knob Parley reads from the environment. Secrets are `SecretStr` and never printed."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(Path("data"), description="Calls database, transcripts, recordings, models.")
    agents_dir: Path = Field(Path("agents"), description="Folder of agent YAML files.")
    prompts_dir: Path = Field(Path("prompts"), description="Folder holding prompts.yaml and *.md prompts.")
    default_agent: str = Field("receptionist", description="Agent used when nothing else chooses one.")

    # --- storage and queue -------------------------------------------------------------------
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite file in DATA_DIR.")
    redis_url: str = Field("", description="redis://host:port/db; empty = in-process queue.")
    redis_prefix: str = Field("parley:", description="Prefix of every Redis key (queue, workers, slots).")
    db_pool_size: int = Field(10, ge=1, le=500, description="PostgreSQL connections per process (up to three times "
                              "as many on bursts): keep (workers + APIs) x 3 x this under max_connections.")

    # --- API ---------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_keys: SecretStr = Field(SecretStr(""), description="Comma-separated API keys for X-API-Key.")
    public_url: str = Field("", description="Base URL the API is reachable at from outside (webhooks, docs).")
    webhook_url: str = Field("", description="Global webhook receiving call events.")
    webhook_secret: SecretStr = Field(SecretStr(""), description="HMAC-SHA256 key signing webhooks.")
    webhook_allowed_hosts: str = Field(
        "", description="Hosts, addresses or CIDRs webhooks/HTTP tools may reach although not public (SSRF guard)."
    )
    webhook_allow_loopback: bool = Field(False, description="Development only: let webhooks reach 127.0.0.1/::1.")

    # --- SIP ---------------------------------------------------------------------------------
    sip_host: str = Field("127.0.0.1", description="Address the SIP endpoint binds to.")
    sip_port: int = Field(5060, ge=1, le=65535)
    sip_transport: Literal["udp", "tcp", "both"] = "both"
    sip_public_host: str = Field("", description="Address written into Contact/SDP when behind NAT.")
    sip_server_header: str = Field("", description="Server header on SIP responses; empty = none (no fingerprint).")
    sip_user_agent: str = Field("Parley/0.1", description="User-Agent on SIP requests we send; empty = none.")
    sip_rate_limit: float = Field(200.0, ge=0, description="SIP messages/s per source IP (burst 2x); 0 = off.")
    sip_invites_per_source: int = Field(50, ge=0, description="Unanswered INVITEs per source IP.")
    sip_tcp_max_connections: int = Field(1024, ge=0, description="Accepted SIP TCP connections (32 per source).")
    sip_tcp_idle_timeout_s: float = Field(120.0, ge=0, description="Close a SIP TCP connection idle this long before its first message.")
    sip_trusted_sources: str = Field("", description="Comma-separated IPs or CIDRs (e.g. your proxy) exempt from "
                                     "SIP limits, their Via honoured.")
    rtp_port_min: int = Field(20000, ge=1024, le=65535)
    rtp_port_max: int = Field(30000, ge=1024, le=65535)

    ring_timeout_s: float = Field(45.0, gt=0, le=600, description="Outbound: give up ringing after this long.")
    incoming_call_webhook_url: str = Field(
        "", description="Asked before answering an inbound call: may choose agent/variables or reject."
    )
    incoming_call_webhook_timeout_s: float = Field(2.0, gt=0, le=30)

    # --- WebRTC (browser calls) -------------------------------------------------------------------
    webrtc_ice_addresses: str = Field(
        "", description="Comma-separated local addresses offered as ICE host candidates; empty = every "
                        "interface address plus 127.0.0.1 (a browser on this machine).")
    webrtc_public_address: str = Field(
        "", description="Public IP of a 1:1 NAT in front of this host, added as a candidate on the same ports.")
    webrtc_ice_servers: str = Field(
        "", description="Comma-separated stun:host:port / turn:host:port[?transport=tcp] URLs; empty = none, "
                        "nothing is asked outside this machine.")
    webrtc_turn_username: str = ""
    webrtc_turn_password: SecretStr = SecretStr("")
    webrtc_connect_timeout_s: float = Field(
        15.0, gt=0, le=120, description="Give up a browser call whose ICE/DTLS has not connected by then.")

    # --- SIP trunk (original project names) ----------------------------------------------------
    sip_trunk_host: str = ""
    sip_trunk_port: int = Field(5060, ge=1, le=65535)
    sip_trunk_username: str = ""
    sip_trunk_password: SecretStr = SecretStr("")
    sip_trunk_number: str = ""

    # --- dialer ------------------------------------------------------------------------------
    num_agents: int = Field(4, ge=1, description="Concurrent conversations per worker (original name).")
    max_calls_per_second: float = Field(10.0, gt=0)

    # --- scale-out (docs/deploy.md) ---------------------------------------------------------------
    max_concurrent_calls: int = Field(
        0, ge=0, description="Calls at once across every worker (Redis-wide); 0 = only NUM_AGENTS per worker.")
    worker_id: str = Field("", description="This worker's name in the registry; empty = host:pid.")
    max_loop_busy: float = Field(
        0.0, ge=0, le=1,
        description="Refuse new calls (503) while this worker's event loop used more than this share of a core "
        "over the last 5 s, projected onto the calls up and the next one (every call's audio runs on it); "
        "0 = off (the default: a burst of new calls is refused too; docs/deploy.md \"Overload\"); 0.8 measured.")
    max_loop_wait: float = Field(
        0.0, ge=0, le=1,
        description="Refuse new calls (503) while this worker's event loop waited for a CPU more than this share "
        "of the last 5 s (the machine's cores are taken); 0 = off (the default); 0.05 measured.")
    worker_lease_s: float = Field(10.0, gt=0, le=600, description="A silent worker is lost after this long.")
    worker_heartbeat_s: float = Field(2.0, gt=0, le=60, description="How often a worker renews its lease.")
    drain_timeout_s: float = Field(60.0, ge=0, description="On SIGTERM, wait this long for live calls to end.")
    worker_health_port: int = Field(0, ge=0, le=65535,
                                    description="`parley worker` side port for /health and /metrics; 0 = none.")

    # --- Azure Speech / Azure OpenAI / OpenAI-compatible ----------------------------------------
    azure_speech_key: SecretStr = SecretStr("")
    azure_speech_region: str = ""
    azure_openai_api_key: SecretStr = SecretStr("")
    azure_openai_endpoint: str = ""
    azure_openai_deployment_name: str = ""
    azure_openai_api_version: str = "2024-10-21"
    openai_api_key: SecretStr = SecretStr("")
    openai_base_url: str = ""

    # --- Twilio / LiveKit (original project names) ----------------------------------------------
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_phone_number: str = ""
    twilio_public_url: str = Field(
        "", description="Base URL Twilio reaches Parley at (https://…); empty = PUBLIC_URL, else proxy headers.")
    twilio_api_base_url: str = Field("", description="Twilio REST base URL override (a regional proxy, tests).")
    twilio_trunk_name: str = Field("parley", description="Friendly name of the Elastic SIP trunk we manage.")
    twilio_stream_token_ttl_s: float = Field(60.0, gt=0, le=3600,
                                             description="How long a Media Streams token stays usable.")
    livekit_url: str = ""
    livekit_api_key: str = ""
    livekit_api_secret: SecretStr = SecretStr("")

    # --- offline engines -----------------------------------------------------------------------
    whisper_model: str = Field(
        "", description="Model dir or size name; empty = bundled tiny.en for English, bundled base otherwise."
    )
    whisper_threads: int = Field(1, ge=1)

    # --- logging -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("sip_trusted_sources")
    @classmethod
    def _addresses(cls, value: str) -> str:
        import ipaddress

        for item in (v.strip() for v in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def api_key_list(self) -> list[str]:
        """The configured API keys, blanks dropped."""
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    @property
    def effective_database_url(self) -> str:
        """`DATABASE_URL`, or a SQLite file inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    def masked(self) -> dict[str, Any]:
        """Settings as plain values with every secret replaced by `MASK` (empty secrets stay empty)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = MASK if value.get_secret_value() else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        out["database_url"] = mask_url(self.effective_database_url)
        out["redis_url"] = mask_url(self.redis_url)
        return out


def mask_url(url: str) -> str:
    """Hide the password part of a URL such as `postgresql://user:pw@host/db`."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":" + MASK
    return f"{scheme}://{creds}@{host}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests call `get_settings.cache_clear()`)."""
    return Settings()
