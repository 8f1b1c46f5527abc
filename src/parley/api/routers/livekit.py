"""`POST /livekit/webhook`: LiveKit's webhooks (public: authenticated by LiveKit's signature, not X-API-Key).

Configure it in LiveKit (`webhook.urls` in the server config, or the Cloud project's settings). Unsigned,
forged or stale events get 401; with LiveKit not configured here, 503. A participant joining starts a room
session (an agent joins the room), see docs/livekit.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from parley.api.deps import StateDep
from parley.api.errors import ApiError
from parley.logging import get_logger

router = APIRouter(tags=["livekit"])
log = get_logger(__name__)


@router.post("/livekit/webhook", summary="LiveKit webhook (signed by LiveKit; no API key)")
async def livekit_webhook(request: Request, state: StateDep) -> dict[str, Any]:
    from parley.telephony.livekit.config import LiveKitConfig, LiveKitConfigError
    from parley.telephony.livekit.webhooks import WebhookRejected, handle, verify

    try:
        config = LiveKitConfig.from_settings(state.settings)
    except LiveKitConfigError as exc:
        raise ApiError(503, "not_configured", f"LiveKit is not configured here: {exc}") from None
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        event = verify(config, body, request.headers.get("Authorization"))
    except WebhookRejected as exc:
        log.warning("LiveKit webhook refused", reason=str(exc), client=request.client.host if request.client else None)
        raise ApiError(401, "unauthorized", f"LiveKit webhook refused: {exc}") from None
    return await handle(state.livekit, event)
