"""What the OpenAPI document says beyond the route declarations: the loaded agents as the values an
`agent` field takes, so that a request the schema calls valid is one the API accepts."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from parley.agents import AgentRegistry

#: Request schemas whose `agent` property names a loaded agent (key or name).
AGENT_FIELDS = ("OutboundCallRequest", "DispatchRule")


def describe_agents(app: FastAPI, registry: AgentRegistry) -> None:
    """Make `app.openapi()` list the loaded agents' keys and names as the enum of every `agent` field."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        names = sorted({a.key for a in registry} | {a.name for a in registry})
        components = schema.get("components", {}).get("schemas", {})
        for model in AGENT_FIELDS:
            prop = components.get(model, {}).get("properties", {}).get("agent")
            if prop is None:
                continue
            branches = prop.get("anyOf")
            for branch in branches if branches else [prop]:
                if branch.get("type") == "string":
                    branch["enum"] = names
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
