"""Fixtures for the calls service: stores on SQLite files and real PostgreSQL, services, fast timers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from parley.agents import AgentRegistry
from parley.calls.service import CallsService
from parley.calls.store import Store
from parley.calls.webhooks import RetryTiming
from tests.conftest import ROOT


@pytest.fixture(scope="session")
def agents() -> AgentRegistry:
    return AgentRegistry.load(ROOT / "agents", ROOT / "prompts")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.from_url(db_url)
    await s.upgrade()
    yield s
    await s.close()


ServiceFactory = Callable[..., Awaitable[CallsService]]


@pytest.fixture
async def make_service(settings, agents) -> AsyncIterator[ServiceFactory]:  # type: ignore[no-untyped-def]
    """Factory for services on the test settings (SQLite file in the tmp data dir unless told otherwise);
    fast webhook retry timings. Every service made is closed afterwards."""
    made: list[CallsService] = []

    async def make(**kwargs) -> CallsService:  # type: ignore[no-untyped-def]
        opts = {"agents": agents, "webhook_timing": RetryTiming(base_s=0.05, factor=2.0, max_attempts=6,
                                                                timeout_s=5.0),
                "webhook_poll_s": 1.0}
        opts.update(kwargs)
        s = kwargs.pop("settings_", None) or settings
        opts.pop("settings_", None)
        service = await CallsService.open(s, **opts)
        made.append(service)
        return service

    yield make
    for service in reversed(made):
        await service.close()
