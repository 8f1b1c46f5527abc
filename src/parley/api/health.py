"""The health registry: each running part registers a check; `report()` runs them all at once.

A check returns a short status text, or raises with the reason. A check that raises or takes longer than
the registry's timeout marks its part failing; the report names every failing part. The `/health` route
(`routers/health.py`) answers the report, with 503 when anything fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: A health check returns a short status text, or raises with the reason.
HealthCheck = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class PartHealth:
    """One part's answer."""

    ok: bool
    status: str


@dataclass(frozen=True)
class HealthReport:
    """Every registered part's answer, in registration order."""

    services: dict[str, PartHealth]

    @property
    def failing(self) -> list[str]:
        return [name for name, part in self.services.items() if not part.ok]

    def to_dict(self) -> dict[str, Any]:
        """`{"status": "healthy"|"degraded", ["failing": [...]], "services": {name: {"ok", "status"}}}`."""
        services = {name: {"ok": p.ok, "status": p.status} for name, p in self.services.items()}
        if self.failing:
            return {"status": "degraded", "failing": self.failing, "services": services}
        return {"status": "healthy", "services": services}


class HealthRegistry:
    """The checks of the running parts, by name. Registering a name again replaces its check."""

    def __init__(self, timeout_s: float = 3.0) -> None:
        self.timeout_s = timeout_s
        self._checks: dict[str, HealthCheck] = {}

    def add(self, name: str, check: HealthCheck) -> None:
        """Register `check` as the health of part `name`."""
        self._checks[name] = check

    async def report(self) -> HealthReport:
        """Run every check concurrently, each bounded by the timeout."""
        results = await asyncio.gather(*(self._run(c) for c in self._checks.values()))
        return HealthReport(dict(zip(self._checks, results)))

    async def _run(self, check: HealthCheck) -> PartHealth:
        try:
            return PartHealth(True, await asyncio.wait_for(check(), self.timeout_s))
        except asyncio.TimeoutError:
            return PartHealth(False, f"no answer within {self.timeout_s:g}s")
        except Exception as exc:  # the reason goes to the caller, not the log
            return PartHealth(False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
