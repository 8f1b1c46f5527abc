"""Fixtures for campaigns: a calls service on a SQLite file (or PostgreSQL), a fake clock, CSV files, and
`platform` (a whole server dialing SIPp, `tests/campaigns/sipp_platform.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
async def platform(settings) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """`await platform(trunk_port, clock, **settings_updates)` -> a running server (`sipp_platform.Server`)."""
    from tests.campaigns.sipp_platform import platforms

    async for start in platforms(settings):
        yield start


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """'' (a SQLite file in the data dir) or a fresh PostgreSQL schema."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def make_service(settings, agents, database_url: str) -> AsyncIterator[ServiceFactory]:  # type: ignore[no-untyped-def]
    made: list[CallsService] = []

    async def make(**updates) -> CallsService:  # type: ignore[no-untyped-def]
        s = settings.model_copy(update={"database_url": database_url, **updates})
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


class Phones:
    """The far end for `place_call` in runner tests (the injection point the SIP gateway fills): each
    number answers with its scripted outcomes in turn (`completed` once the script is used up), `hold`
    stays up until `release` is set; it counts dials per number and the peak of simultaneous calls."""

    def __init__(self, service: CallsService, script: dict[str, list[str]] | None = None) -> None:
        from collections import Counter

        self.service = service
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.dialed: Counter[str] = Counter()
        self.live: Counter[str] = Counter()
        self.peak_per_number = 0
        self.peak = 0
        self.release = __import__("asyncio").Event()

    async def place_call(self, call):  # type: ignore[no-untyped-def]
        from parley.calls.outcomes import DialOutcome

        number = call.to_number
        self.dialed[number] += 1
        self.live[number] += 1
        self.peak_per_number = max(self.peak_per_number, self.live[number])
        self.peak = max(self.peak, sum(self.live.values()))
        try:
            plan = self.script.get(number) or []
            outcome = plan.pop(0) if plan else "completed"
            if outcome not in ("completed", "hold"):
                return DialOutcome(outcome, f"far end said {outcome}")
            await self.service.transition(call.id, "ringing")
            await self.service.transition(call.id, "in_progress")
            if outcome == "hold":
                await self.release.wait()
            return DialOutcome("completed", "far end hung up")
        finally:
            self.live[number] -= 1
