"""Fixtures for the engine tests that run the real offline engines (Whisper base, piper, silero)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from parley.agents import AgentRegistry
from parley.engine.session import Engines
from parley.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the session, so Whisper base is assembled once."""
    return tmp_path_factory.mktemp("engine-data")


@pytest.fixture(scope="session")
def offline_settings(engine_data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=engine_data_dir,
        agents_dir=ROOT / "agents",
        prompts_dir=ROOT / "prompts",
        api_keys="test-key",  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def receptionist(offline_settings: Settings) -> Engines:
    """The shipped receptionist agent with its real offline providers, models loaded."""
    registry = AgentRegistry.load(offline_settings.agents_dir, offline_settings.prompts_dir)
    engines = Engines.build(registry.get("receptionist"), offline_settings)
    asyncio.run(engines.warm())
    return engines
