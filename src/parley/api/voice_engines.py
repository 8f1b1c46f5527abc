"""The providers `POST /api/voice-pipeline` talks through: built once per agent, on first use, then kept.

Concurrent first requests for one agent build its engines once (the build runs under a lock, off the event
loop). Engines built elsewhere (a test fixture, a warm pool) can be handed in up front.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from parley.agents import Agent
from parley.engine.session import Engines
from parley.settings import Settings


class VoiceEngines:
    """Engines by agent key."""

    def __init__(self, settings: Settings, prebuilt: Mapping[str, Engines] | None = None) -> None:
        self._settings = settings
        self._engines: dict[str, Engines] = dict(prebuilt or {})
        self._lock = asyncio.Lock()

    async def for_agent(self, agent: Agent) -> Engines:
        """The warmed engines of `agent`; raises `ValueError` / `ProviderError` when they cannot be built."""
        async with self._lock:
            engines = self._engines.get(agent.key)
            if engines is None:
                engines = await asyncio.to_thread(Engines.build, agent, self._settings)
                await engines.warm()
                self._engines[agent.key] = engines
            return engines
