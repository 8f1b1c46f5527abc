"""`/api/outbound-call` and `/api/calls…`: queue calls, list them, read one, cancel, transcript, recording."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from parley.api.deps import CallsDep, StateDep
from parley.api.errors import ApiError, error_responses
from parley.calls import CallNotFound, CallRequestError, IllegalTransition
from parley.calls.service import normalise_e164
from parley.calls.states import CallStatus
from parley.support.egress import EgressPolicy, EgressRefused, check_url

router = APIRouter(tags=["calls"])

#: Largest `metadata` / `variables` of a call, as compact JSON (they ride along in every webhook).
MAX_FREE_DATA_BYTES = 16 * 1024


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


#: What `normalise_e164` accepts: + and 2–15 ASCII digits (the first not 0), spaces, dots, dashes, brackets between.
E164_INPUT = r"^[\s().-]*\+[\s().-]*[1-9]([\s().-]*[0-9]){1,14}[\s().-]*$"
#: An http(s) URL with a host (the scheme in any case); refused addresses are checked by `support/egress.py`.
_PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
WEBHOOK_URL = (r"^[Hh][Tt][Tt][Pp][Ss]?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#@:\[\]]+)"
               rf"(:{_PORT})?([/?#]\S*)?$")
#: RFC 3339 date-time, as the OpenAPI `format: date-time` means (seconds and offset required).
RFC3339 = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")


def _rfc3339(value: Any) -> Any:
    """Only RFC 3339 text becomes a date-time (not Unix numbers or a bare date, which pydantic would take)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time like 2026-01-31T09:30:00Z")
    return value


DateTime = Annotated[datetime, BeforeValidator(_rfc3339)]


def _e164(value: str, field: str) -> str:
    try:
        return normalise_e164(value, field)
    except CallRequestError as exc:
        raise ValueError(exc.message) from None


class OutboundCallRequest(BaseModel):
    """A call to place. The original four fields are enough; the rest are optional."""

    model_config = ConfigDict(extra="forbid")

    to_number: str = Field(description="E.164 number to call, e.g. +14155550123.", pattern=E164_INPUT)
    caller_name: str | None = Field(None, max_length=256, description="Name of the person called.")
    llm_prompt: str | None = Field(None, max_length=20000, description="System prompt override.")
    greeting: str | None = Field(None, max_length=2000, description="First sentence override.")
    agent: str | None = Field(None, description="Agent key or name (default DEFAULT_AGENT).")
    from_number: str | None = Field(None, description="Caller ID in E.164 (default the trunk's number).",
                                    pattern=f"^$|{E164_INPUT}")
    trunk: str | None = Field(None, max_length=64, description="Outbound trunk name; `livekit:<name>` dials "
                              "through LiveKit SIP.")
    variables: dict[str, Any] = Field(default_factory=dict,
                                      description="Prompt/greeting template values (at most 16 KiB as JSON).")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="Free data returned in webhooks (at most 16 KiB as JSON).")
    schedule_at: DateTime | None = Field(None, description="Dial no earlier than this (RFC 3339).")
    max_retries: int | None = Field(None, ge=0, le=20, strict=True,
                                    description="Retries on busy/no answer/failure.")
    retry_backoff_s: float | None = Field(None, ge=0, le=86400, strict=True,
                                          description="First retry delay (doubles).")
    webhook_url: str | None = Field(None, pattern=f"^$|{WEBHOOK_URL}",
                                    description="Where this call's events are POSTed (http/https; addresses that "
                                                "are not public are refused unless WEBHOOK_ALLOWED_HOSTS allows them).")

    @field_validator("to_number")
    @classmethod
    def _to(cls, value: str) -> str:
        return _e164(value, "to_number")

    @field_validator("from_number")
    @classmethod
    def _from(cls, value: str | None) -> str | None:
        return _e164(value, "from_number") if value else None

    @field_validator("variables", "metadata")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if size > MAX_FREE_DATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {MAX_FREE_DATA_BYTES // 1024} KiB")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return value or None  # the form is the field's pattern; the address is checked in the route


@router.post("/api/outbound-call", summary="Queue an outbound call", responses=error_responses(400, 413, 422))
async def outbound_call(body: OutboundCallRequest, service: CallsDep, state: StateDep) -> dict[str, Any]:
    if body.trunk and body.trunk.startswith("livekit:") and state.livekit is None:
        raise _invalid("trunk", f"{body.trunk!r} goes out through LiveKit SIP, which is not configured here: set "
                                "LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET (docs/livekit.md)")
    if body.webhook_url:
        # SSRF guard (support/egress.py): refuse loopback/private/metadata targets now; every send checks again.
        try:
            await check_url(body.webhook_url, EgressPolicy.of(service.settings), unresolved_ok=True)
        except EgressRefused as exc:
            raise _invalid("webhook_url", exc.reason) from None
    try:
        call = await service.create_call(direction="outbound", **body.model_dump())
    except CallRequestError as exc:
        raise _invalid(exc.field, exc.message) from None
    when = f" for {call.schedule_at.isoformat()}" if call.schedule_at else ""
    return {"status": "queued", "call_id": call.id,
            "message": f"Call to {call.to_number} queued{when} (agent {call.agent})",
            "agent": call.agent, "schedule_at": call.schedule_at.isoformat() if call.schedule_at else None}


#: A page cursor: `c` and the position (opaque to clients; only cursors this API returned are meaningful).
CURSOR = r"^c[0-9]{1,18}$"


def _cursor(seq: int | None) -> str | None:
    return f"c{seq}" if seq is not None else None


def _parse_cursor(cursor: str) -> int:
    if not re.match(CURSOR, cursor):
        raise _invalid("cursor", "not a cursor returned by this API")
    return int(cursor[1:])


@router.get("/api/calls", summary="List calls, newest first", responses=error_responses(422))
async def list_calls(
    service: CallsDep,
    status: CallStatus | None = Query(None, description="Only calls in this status."),
    agent: str | None = Query(None, description="Only calls of this agent (key)."),
    direction: Literal["inbound", "outbound"] | None = Query(None),
    since: DateTime | None = Query(None, description="Created at or after (RFC 3339)."),
    until: DateTime | None = Query(None, description="Created before (RFC 3339)."),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page.", pattern=CURSOR),
    limit: int = Query(50, ge=1, le=500),
    channel: Literal["sip", "webrtc", "twilio", "livekit"] | None = Query(
        None, description="Only calls over this transport."),
    external_id: str | None = Query(None, max_length=64,
                                    description="The carrier's call id, e.g. a Twilio CallSid (CA…)."),
    campaign: str | None = Query(None, max_length=64, description="Only the calls of this campaign (id)."),
) -> dict[str, Any]:
    calls, next_seq = await service.list_calls(
        status=status.value if status else None, agent=agent, direction=direction, since=since, until=until,
        before_seq=_parse_cursor(cursor) if cursor else None, limit=limit, channel=channel,
        external_id=external_id, campaign=campaign)
    return {"calls": [c.to_dict() for c in calls], "next_cursor": _cursor(next_seq)}


@router.get("/api/calls/{call_id}", summary="One call with its timeline, transcript and webhook deliveries",
            responses=error_responses(404, 422))
async def get_call(call_id: str, service: CallsDep) -> dict[str, Any]:
    detail = await service.get(call_id)
    if detail is None:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}")
    return detail.to_dict()


@router.post("/api/calls/{call_id}/cancel", summary="Cancel a queued or live call",
             responses=error_responses(404, 409, 422))
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
            response_model=None, responses={
                200: {"description": "The transcript (JSON, or text with `?format=text`).",
                      "content": {"application/json": {"schema": {"type": "object"}},
                                  "text/plain": {"schema": {"type": "string"}}}},
                **error_responses(404, 422)})
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
            response_model=None, response_class=FileResponse, responses={
                200: {"description": "The recording.",
                      "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}},
                                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                **error_responses(404, 422)})
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


@router.post("/api/calls/{call_id}/analyze", summary="Run the agent's post-call analysis (again) on a finished call")
async def analyze_call(call_id: str, service: CallsDep,
                       webhook: bool = Query(False, description="Send `call.analyzed` again even if it was sent.")
                       ) -> dict[str, Any]:
    try:
        analysis = await service.analyze(call_id, resend=webhook)
    except CallNotFound:
        raise ApiError(404, "not_found", f"no call with id {call_id!r}") from None
    except ValueError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return {"call_id": call_id, "analysis": analysis}
