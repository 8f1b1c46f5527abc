"""The app under test for bench/twilio/run.py, in its own process (so its CPU and RSS are its own):
`python -m bench.twilio.server PORT DATA_DIR [DETECTOR]` — the API with the Twilio routes, the bench agent (instant
STT/LLM/TTS, a real WebRTC VAD; bench/gateway/fakes.py) as the default agent, JSON logs on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from bench.gateway.fakes import AGENT_KEY, register_instant_providers, write_agent
from parley.agents import AgentRegistry
from parley.api import create_app
from parley.logging import configure
from parley.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "bench-auth-token"


def main() -> None:
    port, data = int(sys.argv[1]), Path(sys.argv[2])
    configure(level="INFO", json=True)
    register_instant_providers()
    write_agent(data / "agents", vad="webrtc", detector=sys.argv[3] if len(sys.argv) > 3 else "smart_turn")
    settings = Settings(_env_file=None, data_dir=data, agents_dir=data / "agents",  # type: ignore[call-arg]
                        prompts_dir=ROOT / "prompts", default_agent=AGENT_KEY, num_agents=200,
                        api_keys="bench", twilio_account_sid=ACCOUNT_SID,  # type: ignore[arg-type]
                        twilio_auth_token=AUTH_TOKEN)  # type: ignore[arg-type]
    app = create_app(settings, agents=AgentRegistry.load(data / "agents", ROOT / "prompts"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, ws="websockets-sansio",
                ws_per_message_deflate=False)  # as `parley up` (cli/common.py)


if __name__ == "__main__":
    main()
