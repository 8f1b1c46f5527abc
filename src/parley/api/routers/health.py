"""`GET /health`: each registered part reports itself; any failing part makes the answer 503."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from parley.api.deps import HealthDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health (no key needed)")
async def health(registry: HealthDep, state: StateDep) -> JSONResponse:
    report = await registry.report()
    body = report.to_dict()
    if state.cluster is not None:  # scale-out: every worker of the registry with its state
        try:
            body["workers"] = [w.to_dict() for w in await state.cluster.workers()]
        except Exception:  # noqa: BLE001 - the `workers`/`redis` checks already say why
            body["workers"] = []
    return JSONResponse(body, status_code=503 if report.failing else 200)
