"""The API serving browser calls, alone in its own process so the benchmark can read its CPU time.

    python -m bench.webrtc.server PORT DATA_DIR AGENTS_DIR AGENT [AGENT …]

Registers the instant providers (bench/gateway/fakes.py), warms the named agents' engines before it
says "ready" on stdout, ICE on 127.0.0.1 only, NUM_AGENTS 32.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import uvicorn

from bench.gateway.fakes import register_instant_providers
from parley.api import create_app
from parley.api.state import ApiState
from parley.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    port, data_dir, agents_dir, *warm = sys.argv[1:]
    register_instant_providers()
    settings = Settings(_env_file=None, data_dir=Path(data_dir), agents_dir=Path(agents_dir),  # type: ignore[call-arg]
                        prompts_dir=ROOT / "prompts", api_keys="bench-key", num_agents=32,  # type: ignore[arg-type]
                        webrtc_ice_addresses="127.0.0.1", log_level="WARNING")

    async def warm_agents(state: ApiState, stack: AsyncExitStack) -> None:
        for name in warm:
            await state.voice_engines.for_agent(state.agents.get(name))
        print("ready", flush=True)

    app = create_app(settings, startup=[warm_agents])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(port), log_level="warning",
                                           lifespan="on"))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
