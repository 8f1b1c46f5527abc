"""`/api/campaigns…` (create from CSV, list, show, start/pause/resume/cancel, recipients) and `/api/dnc`."""

from __future__ import annotations

import asyncio
import io
import tempfile
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from parley.api.deps import CallsDep, StateDep
from parley.api.errors import ApiError
from parley.calls import CallRequestError
from parley.campaigns.config import CampaignConfig
from parley.campaigns.csv_import import CsvHeaderError
from parley.campaigns.numbers import NumberError
from parley.campaigns.store import CampaignNotFound, CampaignStateError, CampaignStore

router = APIRouter(tags=["campaigns"])

#: Errors listed in a create / import answer (the campaign keeps up to 1,000; the count is exact).
SHOWN_ERRORS = 100


class CampaignRequest(CampaignConfig):
    """A campaign: its settings, and its recipients as CSV text (large files: `POST …/recipients`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("campaign", min_length=1, max_length=256)
    agent: str | None = Field(None, description="Agent key or name (default DEFAULT_AGENT).")
    csv: str | None = Field(None, description="CSV with a header row and a `number` column (E.164).")
    start: bool = Field(False, description="Start dialing at once (else `draft` until /start).")


class DncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[str] = Field(min_length=1, max_length=100_000)
    reason: str | None = Field(None, max_length=500)


def _store(calls: CallsDep) -> CampaignStore:
    return CampaignStore(calls.store)


def _not_found(campaign_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no campaign with id {campaign_id!r}")


def _import_answer(report: Any) -> dict[str, Any]:
    return {"accepted": report.accepted, "rejected": report.bad,
            "errors": [e.to_dict() for e in report.errors[:SHOWN_ERRORS]]}


@router.post("/api/campaigns", summary="Create a campaign (recipients as CSV text)")
async def create_campaign(body: CampaignRequest, calls: CallsDep, state: StateDep) -> dict[str, Any]:
    try:
        agent = calls.agent_key(body.agent)
    except CallRequestError as exc:
        raise ApiError(422, "validation_error", f"agent: {exc.message}",
                       [{"field": "agent", "message": exc.message}]) from None
    config = CampaignConfig.model_validate(body.model_dump(include=set(CampaignConfig.model_fields)))
    store = _store(calls)
    campaign = await store.create(body.name, agent, config)
    report = None
    if body.csv is not None:
        try:
            report = await store.import_csv(campaign.id, io.StringIO(body.csv))
        except CsvHeaderError as exc:
            await store.command(campaign.id, "cancel")
            raise ApiError(422, "validation_error", f"csv: {exc}", [{"field": "csv", "message": str(exc)}]
                           ) from None
    if body.start:
        await store.command(campaign.id, "start")
        _wake(state)
    out = (await store.get(campaign.id)).to_dict(errors=False)
    if report is not None:
        out["import"] = _import_answer(report)
    return out


@router.post("/api/campaigns/{campaign_id}/recipients", summary="Add recipients: a CSV request body, streamed")
async def add_recipients(campaign_id: str, request: Request, calls: CallsDep) -> dict[str, Any]:
    store = _store(calls)
    try:
        campaign = await store.get(campaign_id)
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    if campaign.state in ("canceled", "completed"):
        raise ApiError(409, "conflict", f"campaign {campaign_id} is {campaign.state}; recipients cannot be added")
    with tempfile.TemporaryFile() as spool:  # the body goes to disk, never whole into memory
        pending: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            size += len(chunk)
            if size >= 1 << 20:
                await asyncio.to_thread(spool.write, b"".join(pending))
                pending, size = [], 0
        await asyncio.to_thread(spool.write, b"".join(pending))
        spool.seek(0)
        text = io.TextIOWrapper(spool, encoding="utf-8-sig", errors="replace", newline="")
        try:
            report = await store.import_csv(campaign_id, text)
        except CsvHeaderError as exc:
            raise ApiError(422, "validation_error", f"csv: {exc}", [{"field": "csv", "message": str(exc)}]
                           ) from None
        finally:
            text.detach()
    return {"campaign_id": campaign_id, **_import_answer(report)}


@router.get("/api/campaigns", summary="Campaigns, newest first, with counts by outcome")
async def list_campaigns(calls: CallsDep, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    return {"campaigns": [c.to_dict(errors=False) for c in await _store(calls).list_campaigns(limit=limit)]}


@router.get("/api/campaigns/{campaign_id}", summary="One campaign: settings, progress, import errors")
async def get_campaign(campaign_id: str, calls: CallsDep,
                       recipients: bool = Query(False, description="Include the first 1,000 recipients.")
                       ) -> dict[str, Any]:
    store = _store(calls)
    try:
        out = (await store.get(campaign_id)).to_dict()
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    if recipients:
        out["recipients"] = await store.recipients(campaign_id)
    return out


@router.post("/api/campaigns/{campaign_id}/{command}", summary="Start, pause, resume or cancel a campaign")
async def command_campaign(campaign_id: str, command: Literal["start", "pause", "resume", "cancel"],
                           calls: CallsDep, state: StateDep) -> dict[str, Any]:
    try:
        campaign = await _store(calls).command(campaign_id, command)
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    except CampaignStateError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    _wake(state)
    return campaign.to_dict(errors=False)


def _wake(state: StateDep) -> None:
    if state.campaigns is not None:
        state.campaigns.wake()


@router.get("/api/dnc", summary="The do-not-call list")
async def list_dnc(calls: CallsDep, limit: int = Query(1000, ge=1, le=100_000)) -> dict[str, Any]:
    return {"numbers": await _store(calls).list_dnc(limit=limit)}


@router.post("/api/dnc", summary="Add numbers to the do-not-call list (checked at dial time)")
async def add_dnc(body: DncRequest, calls: CallsDep) -> dict[str, Any]:
    try:
        added = await _store(calls).add_dnc(body.numbers, body.reason)
    except NumberError as exc:
        raise ApiError(422, "validation_error", f"numbers: {exc}", [{"field": "numbers", "message": str(exc)}]
                       ) from None
    return {"added": added, "numbers": len(set(body.numbers))}


@router.delete("/api/dnc/{number}", summary="Remove a number from the do-not-call list")
async def remove_dnc(number: str, calls: CallsDep) -> dict[str, Any]:
    try:
        removed = await _store(calls).remove_dnc(number)
    except NumberError as exc:
        raise ApiError(422, "validation_error", f"number: {exc}", [{"field": "number", "message": str(exc)}]
                       ) from None
    if not removed:
        raise ApiError(404, "not_found", f"{number} is not on the do-not-call list")
    return {"removed": number}
