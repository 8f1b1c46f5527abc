"""`POST /api/webhook`: events sent to Parley by other systems.

`{"type": "ping"}` answers `{"type": "pong"}`, even before the calls service runs. The other known types are
stored on a call's timeline and need `call_id`: `note` (`data.text`), `disposition` (`data.disposition`,
e.g. "sale"), `external` (any data).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from parley.api.deps import StateDep, get_calls
from parley.api.errors import ApiError, error_responses
from parley.calls import CallNotFound

router = APIRouter(tags=["webhook"])

KNOWN_TYPES = ("ping", "note", "disposition", "external")
_REQUIRED_DATA = {"note": "text", "disposition": "disposition"}


class InboundEvent(BaseModel):
    """An event for Parley."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description=f"One of: {', '.join(KNOWN_TYPES)}.")
    call_id: str | None = Field(None, description="The call the event is about (all types but ping).")
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in KNOWN_TYPES:
            raise ValueError(f"unknown event type {value!r}; known: {', '.join(KNOWN_TYPES)}")
        return value


def _event_schema(kind: str, needs: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "object"}
    if needs:
        data |= {"required": [needs], "properties": {needs: {"type": "string"}}}
    props: dict[str, Any] = {"type": {"type": "string", "enum": [kind]}, "data": data}
    props["call_id"] = ({"anyOf": [{"type": "string"}, {"type": "null"}]} if kind == "ping"
                        else {"type": "string", "minLength": 1})
    return {"title": f"{kind} event", "type": "object", "additionalProperties": False,
            "required": ["type"] if kind == "ping" else ["type", "call_id", *(["data"] if needs else [])],
            "properties": props}


#: The request body as OpenAPI states it: one shape per event type (what the route below enforces).
EVENT_SCHEMA: dict[str, Any] = {
    "oneOf": [_event_schema(kind, _REQUIRED_DATA.get(kind)) for kind in KNOWN_TYPES],
    "discriminator": {"propertyName": "type"},
}


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


@router.post("/api/webhook", summary="Receive an event (ping, note, disposition, external)",
             responses=error_responses(400, 404, 413, 422),
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": EVENT_SCHEMA}}}})
async def inbound_webhook(event: InboundEvent, state: StateDep) -> dict[str, Any]:
    if event.type == "ping":
        return {"type": "pong"}
    if not event.call_id:
        raise _invalid("call_id", f"required for {event.type!r} events")
    key = _REQUIRED_DATA.get(event.type)
    if key and not isinstance(event.data.get(key), str):
        raise _invalid(f"data.{key}", f"a {event.type!r} event needs a text value here")
    try:
        await get_calls(state).add_event(event.call_id, f"webhook.{event.type}", event.data)
    except CallNotFound:
        raise ApiError(404, "not_found", f"no call with id {event.call_id!r}") from None
    return {"status": "stored", "type": event.type, "call_id": event.call_id}
