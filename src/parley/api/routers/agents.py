"""`/api/agents`: the loaded agents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from parley.agents import Agent
from parley.api.deps import AgentsDep
from parley.api.errors import ApiError, error_responses

router = APIRouter(prefix="/api/agents", tags=["agents"])


def _summary(agent: Agent) -> dict[str, Any]:
    c = agent.spec.components
    return {
        "key": agent.key,
        "name": agent.name,
        "description": agent.spec.description,
        "stt": c.stt.provider,
        "llm": c.llm.provider,
        "tts": c.tts.provider,
        "file": str(agent.path),
    }


@router.get("", summary="List agents")
async def list_agents(registry: AgentsDep) -> dict[str, Any]:
    return {"agents": [_summary(a) for a in registry]}


@router.get("/{name}", summary="One agent's full configuration", responses=error_responses(404))
async def get_agent(name: str, registry: AgentsDep) -> dict[str, Any]:
    try:
        agent = registry.get(name)
    except KeyError as exc:
        raise ApiError(404, "not_found", str(exc.args[0])) from None
    return {**_summary(agent), "spec": agent.spec.model_dump(mode="json")}
