"""`/api/webrtc/…`: browser calls. POST an SDP offer, get the answer (all ICE candidates in it, no
trickle) and the call id; DELETE the call to end it. See docs/webrtc.md for the page's side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from parley.api.deps import StateDep
from parley.api.errors import ApiError
from parley.webrtc.service import SignallingError, WebRtcCalls

router = APIRouter(tags=["webrtc"])


class OfferRequest(BaseModel):
    """A browser's offer for a call with `agent`."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=128, description="Agent key or name.")
    sdp: str = Field(description="The RTCPeerConnection's offer (localDescription.sdp, after ICE gathering).")
    type: str = Field("offer", description="Always 'offer'.")
    variables: dict[str, Any] = Field(default_factory=dict, description="Prompt/greeting template values.")


def _service(state: Any) -> WebRtcCalls:
    if state.webrtc is None:
        raise ApiError(503, "unavailable", "browser calls are not running (the app's startup did not run)")
    service: WebRtcCalls = state.webrtc
    return service


@router.post("/api/webrtc/offer", summary="Start a browser call: SDP offer in, SDP answer out")
async def offer(body: OfferRequest, request: Request, state: StateDep) -> dict[str, Any]:
    service = _service(state)
    try:
        answer = await service.offer(
            body.agent, body.sdp, body.type, variables=body.variables,
            client=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
    except SignallingError as exc:
        message = f"{exc.field}: {exc.message}"
        raise ApiError(exc.status, exc.code, message, [{"field": exc.field, "message": exc.message}]) from None
    return {"call_id": answer.call_id, "sdp": answer.sdp, "type": answer.type}


@router.delete("/api/webrtc/calls/{call_id}", summary="End a browser call")
async def end_call(call_id: str, state: StateDep) -> dict[str, Any]:
    service = _service(state)
    if not await service.end(call_id):
        raise ApiError(404, "not_found", f"no live browser call {call_id!r}",
                       [{"field": "call_id", "message": "no such live browser call"}])
    return {"call_id": call_id, "status": "ending"}
