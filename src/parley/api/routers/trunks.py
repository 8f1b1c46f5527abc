"""`/api/trunks` and `/api/dispatch-rules`: the same management as `parley trunk …`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from parley.api.deps import AgentsDep, CallsDep, StateDep, TelephonyStoreDep
from parley.api.errors import ApiError, error_responses
from parley.api.state import ApiState
from parley.telephony.admin import trunk_status
from parley.telephony.trunks import DispatchRule, Trunk

router = APIRouter(tags=["trunks"])


async def _reload(state: ApiState) -> None:
    """Let a running gateway pick up the change."""
    if state.gateway is not None:
        await state.gateway.reload()


async def _strict(request: Request, model: type[BaseModel]) -> None:
    """Re-read the body in pydantic's strict JSON mode: the declared types exactly (no `0` for `false`, no
    `false` for `0`), as the OpenAPI document states them. The models stay lax for config files and the CLI."""
    try:
        model.model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _same_name(path_name: str, body_name: str) -> None:
    if path_name != body_name:
        raise ApiError(422, "validation_error", f"name: body says {body_name!r} but the URL says {path_name!r}",
                       [{"field": "name", "message": "must match the URL"}])


@router.get("/api/trunks", summary="List trunks (passwords masked)")
async def list_trunks(store: TelephonyStoreDep) -> dict[str, Any]:
    return {"trunks": [t.public_dict() for t in await store.trunks()]}


@router.put("/api/trunks/{name}", summary="Create or replace a trunk", responses=error_responses(400, 413, 422))
async def put_trunk(name: str, trunk: Trunk, store: TelephonyStoreDep, state: StateDep, request: Request
                    ) -> dict[str, Any]:
    await _strict(request, Trunk)
    _same_name(name, trunk.name)
    changed = await store.put(trunk)
    await _reload(state)
    return {"trunk": trunk.public_dict(), "changed": changed}


@router.get("/api/trunks/{name}/status", summary="Reachability, active calls and last error of a trunk",
            responses=error_responses(404))
async def get_trunk_status(name: str, calls: CallsDep, store: TelephonyStoreDep, state: StateDep
                           ) -> dict[str, Any]:
    trunk = await store.get_trunk(name)
    if trunk is None:
        raise ApiError(404, "not_found", f"unknown trunk {name!r}")
    gateway = state.gateway
    status = await trunk_status(calls.store, trunk, gateway.endpoint if gateway else None)
    if gateway is not None and name in gateway.trunk_state:
        live = gateway.trunk_state[name]
        status["registered"] = live.registered
        if live.last_error:
            status["last_error"] = live.last_error
    return status


@router.delete("/api/trunks/{name}", summary="Delete a trunk", responses=error_responses(404))
async def delete_trunk(name: str, store: TelephonyStoreDep, state: StateDep) -> dict[str, Any]:
    if not await store.delete("trunk", name):
        raise ApiError(404, "not_found", f"unknown trunk {name!r}")
    await _reload(state)
    return {"deleted": name}


@router.get("/api/dispatch-rules", summary="List dispatch rules")
async def list_rules(store: TelephonyStoreDep) -> dict[str, Any]:
    return {"dispatch_rules": [r.model_dump(mode="json") for r in await store.rules()]}


@router.put("/api/dispatch-rules/{name}", summary="Create or replace a dispatch rule",
            responses=error_responses(400, 413, 422))
async def put_rule(name: str, rule: DispatchRule, agents: AgentsDep, store: TelephonyStoreDep, state: StateDep,
                   request: Request) -> dict[str, Any]:
    await _strict(request, DispatchRule)
    _same_name(name, rule.name)
    if rule.agent not in agents:
        raise ApiError(422, "validation_error", f"agent: unknown agent {rule.agent!r}",
                       [{"field": "agent", "message": "unknown agent"}])
    changed = await store.put(rule)
    await _reload(state)
    return {"dispatch_rule": rule.model_dump(mode="json"), "changed": changed}


@router.delete("/api/dispatch-rules/{name}", summary="Delete a dispatch rule", responses=error_responses(404))
async def delete_rule(name: str, store: TelephonyStoreDep, state: StateDep) -> dict[str, Any]:
    if not await store.delete("rule", name):
        raise ApiError(404, "not_found", f"unknown dispatch rule {name!r}")
    await _reload(state)
    return {"deleted": name}
