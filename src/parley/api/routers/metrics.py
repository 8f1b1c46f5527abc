"""`GET /metrics`: Prometheus text. Needs `X-API-Key` like every other route but /health and /docs; give
Prometheus the header (`http_headers: {X-API-Key: {secrets: [KEY]}}` in the scrape config)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from parley.api.deps import StateDep
from parley.calls import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics(state: StateDep) -> Response:
    if state.calls is not None:
        await state.calls.refresh_metrics()
    if state.cluster is not None:  # workers by state, live calls per worker (from the registry)
        try:
            await state.cluster.workers()
        except Exception:  # noqa: BLE001 - an unreachable Redis must not break the scrape
            pass
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
