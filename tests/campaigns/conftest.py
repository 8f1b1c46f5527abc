"""Fixtures for campaigns: a calls service on a SQLite file (or PostgreSQL), a fake clock, CSV files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parley.agents import AgentRegistry
from parley.calls.service import CallsService
from parley.calls.webhooks import RetryTiming
from tests.conftest import ROOT


@pytest.fixture(scope="session")
def agents() -> AgentRegistry:
    return AgentRegistry.load(ROOT / "agents", ROOT / "prompts")


@dataclass
class FakeClock:
    """The campaign runner's "now": moved by the test, never by time passing."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 7, 8, 0, tzinfo=UTC))  # a Monday, 08:00 UTC


ServiceFactory = Callable[..., Awaitable[CallsService]]


@pytest.fixture
async def make_service(settings, agents) -> AsyncIterator[ServiceFactory]:  # type: ignore[no-untyped-def]
    made: list[CallsService] = []

    async def make(**updates) -> CallsService:  # type: ignore[no-untyped-def]
        s = settings.model_copy(update=updates) if updates else settings
        service = await CallsService.open(s, agents=agents, webhook_timing=RetryTiming(
            base_s=0.05, factor=2.0, max_attempts=5, timeout_s=5.0), webhook_poll_s=0.1)
        made.append(service)
        return service

    yield make
    for service in reversed(made):
        await service.close()


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path
