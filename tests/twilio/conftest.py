"""Fixtures: Parley's real app under uvicorn on a free port (HTTP + WebSocket), Twilio-signed webhooks,
test agents that answer fast, and caller speech as 8 kHz int16 audio."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import yaml

from parley.agents import AgentRegistry
from parley.api import ApiState, create_app
from parley.telephony.twilio.signature import sign
from tests.conftest import ROOT
from tests.eventually import eventually

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-test-auth-token"


@dataclass
class RunningApp:
    """The app serving on 127.0.0.1:`port`."""

    base: str
    state: ApiState
    server: uvicorn.Server
    http: httpx.AsyncClient

    @property
    def ws_base(self) -> str:
        return "ws" + self.base.removeprefix("http")

    async def webhook(self, path: str, form: dict[str, str], *, token: str = AUTH_TOKEN,
                      signed_url: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST `form` to `path` signed as Twilio signs it (over `signed_url`, default the real URL)."""
        url = self.base + path
        signature = sign(token, signed_url or url, form)
        return await self.http.post(url, data=form, headers={"X-Twilio-Signature": signature, **(headers or {})})

    async def wait_call(self, call_id: str, statuses: set[str], timeout: float = 20.0) -> Any:
        calls = self.state.calls
        assert calls is not None

        async def in_status() -> Any:
            call = await calls.get_call(call_id)
            return call if call is not None and call.status in statuses else None

        return await eventually(in_status, timeout_s=timeout, what=f"call {call_id} in {statuses}")


AppFactory = Callable[..., Awaitable[RunningApp]]


@pytest.fixture
async def parley_app(settings) -> AsyncIterator[AppFactory]:  # type: ignore[no-untyped-def]
    """`await start(agents=None, **settings_updates)` → the app running under uvicorn."""
    running: list[tuple[RunningApp, asyncio.Task[Any]]] = []

    async def start(agents: AgentRegistry | None = None, *, port: int = 0, startup: list[Any] | None = None,
                    **updates: Any) -> RunningApp:
        values = {"twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": AUTH_TOKEN, **updates}
        s = type(settings).model_validate({**settings.model_dump(), **values})
        app = create_app(s, agents=agents, startup=startup)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on", ws="websockets-sansio"))
        task = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, timeout_s=30, what="uvicorn started")
        port = server.servers[0].sockets[0].getsockname()[1]
        running_app = RunningApp(f"http://127.0.0.1:{port}", ApiState.of(app), server, httpx.AsyncClient())
        running.append((running_app, task))
        return running_app

    yield start
    for running_app, task in reversed(running):
        await running_app.http.aclose()
        running_app.server.should_exit = True
        await asyncio.wait_for(task, 20)


@pytest.fixture
def fast_agents(tmp_path: Path) -> AgentRegistry:
    """The receptionist with espeak as its voice (fast), Whisper for the caller's words."""
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    spec = yaml.safe_load((ROOT / "agents" / "receptionist.yaml").read_text())
    spec["components"]["tts"] = {"provider": "espeak"}
    spec["greeting"] = {"inbound": "Hello, you have reached Parley Dental. This is Ava, your assistant. "
                                   "How can I help you today? You can book an appointment, ask about our "
                                   "opening hours, or speak to a person.",
                        "outbound": "Hello, this is Ava from Parley Dental. Do you have a moment?"}
    (agents / "receptionist.yaml").write_text(yaml.safe_dump(spec))
    return AgentRegistry.load(agents, ROOT / "prompts")


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def voice_form(call_sid: str, to: str = "+15005550006", from_: str = "+14155550100") -> dict[str, str]:
    """The fields of Twilio's voice webhook for an inbound call."""
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid, "CallStatus": "ringing",
            "Called": to, "Caller": from_, "Direction": "inbound", "From": from_, "To": to,
            "FromCountry": "US", "ToCountry": "US"}


@pytest.fixture
def twilio_api() -> Any:
    """The Twilio REST stand-in (tests/twilio/rest_standin.py) for this account, on a free port."""
    from tests.twilio.rest_standin import serve

    state, server = serve(ACCOUNT_SID, AUTH_TOKEN)
    yield state
    server.shutdown()
    server.server_close()


from tests.telephony.conftest import webhook_receiver  # noqa: E402,F401 - the incoming-call webhook receiver
