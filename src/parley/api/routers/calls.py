"""`/api/outbound-call` and `/api/calls…`: queue calls, list them, read one, cancel, transcript, recording."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from parley.api.deps import CallsDep
from parley.api.errors import ApiError
from parley.calls import CallNotFound, CallRequestError, IllegalTransition
from parley.calls.service import normalise_e164
from parley.calls.states import CallStatus

router = APIRouter(tags=["calls"])


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def _e164(value: str, field: str) -> str:
    try:
        return normalise_e164(value, field)
    except CallRequestError as exc:
        raise ValueError(exc.message) from None


class OutboundCallRequest(BaseModel):
    """A call to place. The original four fields are enough; the rest are optional."""

    model_config = ConfigDict(extra="forbid")

    to_number: str = Field(description="E.164 number to call, e.g. +14155550123.")
    caller_name: str | None = Field(None, max_length=256, description="Name of the person called.")
    llm_prompt: str | None = Field(None, max_length=20000, description="System prompt override.")
    greeting: str | None = Field(None, max_length=2000, description="First sentence override.")
    agent: str | None = Field(None, description="Agent key or name (default DEFAULT_AGENT).")
    from_number: str | None = Field(None, description="Caller ID in E.164 (default the trunk's number).")
    trunk: str | None = Field(None, max_length=64, description="Outbound trunk name.")
    variables: dict[str, Any] = Field(default_factory=dict, description="Prompt/greeting template values.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free data returned in webhooks.")
    schedule_at: datetime | None = Field(None, description="Dial no earlier than this (ISO 8601).")
    max_retries: int | None = Field(None, ge=0, le=20, description="Retries on busy/no answer/failure.")
    retry_backoff_s: float | None = Field(None, ge=0, le=86400, description="First retry delay (doubles).")
    webhook_url: str | None = Field(None, description="Where this call's events are POSTed.")

    @field_validator("to_number")
    @classmethod
    def _to(cls, value: str) -> str:
        return _e164(value, "to_number")

    @field_validator("from_number")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        return _e164(value, "from_number") if value else None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s):// URL")
        return value or None


@router.post("/api/outbound-call", summary="Queue an outbound call")
async def outbound_call(body: OutboundCallRequest, service: CallsDep) -> dict[str, Any]:
    try:
        call = await service.create_call(direction="outbound", **body.model_dump())
    except CallRequestError as exc:
        raise _invalid(exc.field, exc.message) from None
    when = f" for {call.schedule_at.isoformat()}" if call.schedule_at else ""
    return {"status": "queued", "call_id": call.id,
            "message": f"Call to {call.to_number} queued{when} (agent {call.agent})",
            "agent": call.agent, "schedule_at": call.schedule_at.isoformat() if call.schedule_at else None}


def _cursor(seq: int | None) -> str | None:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=") if seq is not None else None


def _parse_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s"):
            raise ValueError
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise _invalid("cursor", "not a cursor returned by this API") from None


@router.get("/api/calls", summary="List calls, newest first")
async def list_calls(
    service: CallsDep,
    status: CallStatus | None = Query(None, description="Only calls in this status."),
    agent: str | None = Query(None, description="Only calls of this agent (key)."),
    direction: Literal["inbound", "outbound"] | None = Query(None),
    channel: Literal["sip", "webrtc"] | None = Query(None, description="Only calls over this transport."),
    since: datetime | None = Query(None, description="Created at or after (ISO 8601)."),
    until: datetime | None = Query(None, description="Created before (ISO 8601)."),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page."),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    calls, next_seq = await service.list_calls(
        status=status.value if status else None, agent=agent, direction=direction, channel=channel, since=since,
        until=until, before_seq=_parse_cursor(cursor) if cursor else None, limit=limit)
    return {"calls": [c.to_dict() for c in calls], "next_cursor": _cursor(next_seq)}


@router.get("/api/calls/{call_id}", summary="One call with its timeline and transcript")
async def get_call(call_id: str, service: CallsDep) -> dict[str, Any]:
    detail = await service.get(call_id)
    if detail is None:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}")
    return detail.to_dict()


@router.post("/api/calls/{call_id}/cancel", summary="Cancel a queued or live call")
async def cancel_call(call_id: str, service: CallsDep) -> dict[str, Any]:
    try:
        call = await service.cancel(call_id)
    except CallNotFound:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}") from None
    except IllegalTransition as exc:
        raise ApiError(409, "conflict", f"call {call_id} is already {exc.current}; it cannot be canceled"
                       ) from None
    return {"status": call.status, "call_id": call.id, "message": "call canceled", "call": call.to_dict()}


@router.get("/api/calls/{call_id}/transcript", summary="A call's transcript as JSON or text",
            response_model=None)
async def get_transcript(
    call_id: str, service: CallsDep, format: Literal["json", "text"] = Query("json"),
) -> dict[str, Any] | PlainTextResponse:
    try:
        entries = await service.transcript(call_id)
    except CallNotFound:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}") from None
    if format == "text":
        lines = [f"[{e.at.strftime('%H:%M:%S')}] {e.role}: {e.text}" for e in entries]
        return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))
    return {"call_id": call_id, "transcript": [e.to_dict() for e in entries]}


@router.get("/api/calls/{call_id}/recording", summary="A call's recording (WAV) when one exists",
            response_model=None)
async def get_recording(call_id: str, service: CallsDep) -> FileResponse:
    call = await service.get_call(call_id)
    if call is None:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}")
    if not call.recording_path:
        raise ApiError(404, "not_found", f"call {call_id} has no recording (recording is off for its agent, "
                       "or the call was never answered)")
    path = Path(call.recording_path)
    if not path.is_file():
        raise ApiError(404, "not_found", f"the recording of call {call_id} is no longer on disk")
    media = "audio/wav" if path.suffix.lower() == ".wav" else "application/octet-stream"
    return FileResponse(path, media_type=media, filename=f"{call_id}{path.suffix}")
