"""`GET /health`: each registered part reports itself; any failing part makes the answer 503."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

#: A health check returns a short status text, or raises with the reason.
HealthCheck = Callable[[], Awaitable[str]]

router = APIRouter(tags=["health"])


async def _run(check: HealthCheck, timeout: float) -> tuple[bool, str]:
    try:
        return True, await asyncio.wait_for(check(), timeout)
    except asyncio.TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except Exception as exc:  # the reason goes to the caller, not the log
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@router.get("/health", summary="Service health (no key needed)")
async def health(request: Request) -> JSONResponse:
    checks: dict[str, HealthCheck] = request.app.state.health_checks
    results = await asyncio.gather(*(_run(c, 3.0) for c in checks.values()))
    services = {name: {"ok": ok, "status": text} for name, (ok, text) in zip(checks, results)}
    failing = [name for name, s in services.items() if not s["ok"]]
    if failing:
        body = {"status": "degraded", "failing": failing, "services": services}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "healthy", "services": services})
