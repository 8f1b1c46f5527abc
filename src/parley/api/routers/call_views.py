"""What the dashboard reads besides the calls API: live calls as a server-sent event stream, and a call's
webhooks with their delivery state.

`GET /api/live-calls` sends `event: live` with `{"calls": [...]}` (calls dialing, ringing or in progress)
at once and again whenever that set or a call in it changes; it reads the calls database, so it sees the
calls of every worker sharing it. A stream opened with a dashboard session ends when the session does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from parley.api.deps import CallsDep, StateDep
from parley.api.errors import ApiError
from parley.calls.states import ACTIVE

router = APIRouter(tags=["calls"])

POLL_S = 1.0
KEEPALIVE_S = 15.0


@router.get("/api/live-calls", summary="Live calls as server-sent events (text/event-stream)",
            response_class=StreamingResponse)
async def live_calls(request: Request, service: CallsDep, state: StateDep) -> StreamingResponse:
    session = getattr(request.state, "session", None)

    async def events() -> AsyncIterator[str]:
        last: list[dict[str, Any]] | None = None
        quiet = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            if session is not None and not state.sessions.alive(session):
                yield "event: ended\ndata: {\"reason\": \"signed out\"}\n\n"
                return
            calls = await service.store.calls_in({s.value for s in ACTIVE})
            snapshot = [c.to_dict() for c in calls]
            if snapshot != last:
                last, quiet = snapshot, 0.0
                yield f"event: live\ndata: {json.dumps({'calls': snapshot})}\n\n"
            elif quiet >= KEEPALIVE_S:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_S)
            quiet += POLL_S

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _public_url(url: str) -> str:
    """A webhook URL without user info or query (either may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


@router.get("/api/calls/{call_id}/webhooks", summary="A call's webhook events and their delivery state")
async def call_webhooks(call_id: str, service: CallsDep) -> dict[str, Any]:
    if await service.get_call(call_id) is None:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}")
    rows = await service.store.webhooks_for(call_id)
    return {"call_id": call_id, "webhooks": [{**r, "url": _public_url(r["url"])} for r in rows]}
