"""`/api/agents`: the loaded agents, and (for the dashboard) each one's effective YAML, prompts and the
problems the agent files on disk have now."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import yaml
from fastapi import APIRouter

from parley.agents import Agent
from parley.agents.loader import Direction, validate_paths
from parley.agents.prompts import PromptError
from parley.api.deps import AgentsDep, SettingsDep
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
async def list_agents(registry: AgentsDep, settings: SettingsDep) -> dict[str, Any]:
    """The loaded agents, and `problems`: what is wrong in the agent files on disk now (one line each;
    a file changed since start-up is loaded again only at the next start)."""
    problems = await asyncio.to_thread(validate_paths, [settings.agents_dir], settings.prompts_dir)
    return {"agents": [_summary(a) for a in registry], "problems": problems}


@router.get("/{name}", summary="One agent's full configuration", responses=error_responses(404))
async def get_agent(name: str, registry: AgentsDep) -> dict[str, Any]:
    try:
        agent = registry.get(name)
    except KeyError as exc:
        raise ApiError(404, "not_found", str(exc.args[0])) from None
    return {**_summary(agent), "spec": agent.spec.model_dump(mode="json")}


_SECRET_NAME = re.compile(r"key|secret|token|password|passwd|auth|credential|signature", re.IGNORECASE)
HIDDEN = "(hidden)"


def redact(value: Any, name: str = "") -> Any:
    """`value` with the values of secret-looking keys and of every HTTP header replaced by "(hidden)"."""
    if isinstance(value, dict):
        if name == "headers":
            return {k: HIDDEN for k in value}
        return {k: (HIDDEN if _SECRET_NAME.search(str(k)) and v not in (None, "", {}, [])
                    and not isinstance(v, (dict, list)) else redact(v, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    return value


DIRECTIONS: tuple[Direction, ...] = ("inbound", "outbound")


def _rendered(agent: Agent, direction: Direction) -> dict[str, str]:
    """The prompt and greeting a call in `direction` gets with the agent's default variables."""
    try:
        prompt = agent.system_prompt(direction)
        greeting = agent.greeting(direction)
    except PromptError as exc:
        return {"error": str(exc), "key": agent.spec.prompt_key(direction)}
    return {"key": agent.spec.prompt_key(direction), "prompt": prompt, "greeting": greeting}


@router.get("/{name}/config", summary="One agent's effective YAML (defaults filled in, secrets hidden), "
            "its rendered prompts and the problems in its file now")
async def agent_config(name: str, registry: AgentsDep, settings: SettingsDep) -> dict[str, Any]:
    try:
        agent = registry.get(name)
    except KeyError as exc:
        raise ApiError(404, "not_found", str(exc.args[0])) from None
    spec = redact(agent.spec.model_dump(mode="json"))
    problems = await asyncio.to_thread(validate_paths, [agent.path], settings.prompts_dir)
    return {**_summary(agent), "yaml": yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
            "prompts": {d: _rendered(agent, d) for d in DIRECTIONS}, "problems": problems}
