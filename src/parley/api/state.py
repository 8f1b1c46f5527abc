"""What the running API holds: settings, agents, keys, health registry, and the parts its start-up opened.

`create_app` builds one `ApiState` and attaches it to the app; routes receive its parts through the typed
dependencies in `deps.py`, start-up hooks (`runtime.py`) fill in `calls` and `gateway`, and code holding
only the app (tests, embedders) reads it with `ApiState.of(app)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import FastAPI

from parley.agents import AgentRegistry
from parley.api.auth import KeyRing
from parley.api.health import HealthRegistry
from parley.api.session import SessionStore, SignInLimiter
from parley.api.voice_engines import VoiceEngines
from parley.settings import Settings

if TYPE_CHECKING:
    from parley.calls import CallsService
    from parley.campaigns.runner import CampaignRunner
    from parley.calls.cluster import Cluster
    from parley.telephony.gateway import Gateway
    from parley.telephony.livekit.sessions import RoomSessions
    from parley.telephony.twilio.bridge import TwilioBridge
    from parley.webrtc.service import WebRtcCalls


@dataclass
class ApiState:
    """The API's parts. `calls` is set once the app's lifespan has started; `gateway` only under `parley up`."""

    settings: Settings
    agents: AgentRegistry
    keyring: KeyRing
    health: HealthRegistry
    voice_engines: VoiceEngines
    calls: CallsService | None = None
    gateway: Gateway | None = None
    livekit: RoomSessions | None = None  # LiveKit room sessions, when LIVEKIT_URL/KEY/SECRET are set
    twilio: TwilioBridge | None = None
    webrtc: WebRtcCalls | None = None  # browser calls; set by `runtime.open_webrtc`
    sessions: SessionStore = field(default_factory=SessionStore)  # dashboard sign-ins (api/session.py)
    sign_in_limiter: SignInLimiter = field(default_factory=SignInLimiter)
    #: The campaign runner, where this process dials (`parley up`).
    campaigns: CampaignRunner | None = None
    #: Set when REDIS_URL is: the workers' registry, the reaper and the cluster-wide slots.
    cluster: Cluster | None = None
    #: Where this process's /health answers (a worker's side port), written on its registry card.
    health_url: str = ""

    def attach(self, app: FastAPI) -> None:
        """Make this the state of `app`."""
        app.state.parley = self

    @staticmethod
    def of(app: FastAPI) -> ApiState:
        """The state `create_app` attached to `app`."""
        state = getattr(app.state, "parley", None)
        if not isinstance(state, ApiState):
            raise RuntimeError("this app was not built by parley.api.create_app")
        return state
