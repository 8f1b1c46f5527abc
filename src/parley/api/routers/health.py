"""`GET /health`: each registered part reports itself; any failing part makes the answer 503."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from parley.api.deps import HealthDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health (no key needed)")
async def health(registry: HealthDep) -> JSONResponse:
    report = await registry.report()
    return JSONResponse(report.to_dict(), status_code=503 if report.failing else 200)
