"""The tools as offered to the LLM (OpenAI function-calling shape); built-ins get default wording."""

from __future__ import annotations

from typing import Any

from parley.agents.spec import ToolSpec
from parley.providers.base import ToolDefinition

_BUILTIN_PARAMETERS: dict[str, dict[str, Any]] = {
    "end_call": {"type": "object", "properties": {}},
    "transfer_call": {
        "type": "object",
        "properties": {
            "target": {"type": "string", "description": "Phone number or SIP URI to transfer to."}
        },
    },
    "send_dtmf": {
        "type": "object",
        "properties": {"digits": {"type": "string", "description": "Keys to press: 0-9, *, #."}},
        "required": ["digits"],
    },
}

_BUILTIN_DESCRIPTIONS = {
    "end_call": "End the call after saying goodbye.",
    "transfer_call": "Transfer the caller to a person or another number.",
    "send_dtmf": "Press touch-tone keys on the line (e.g. to navigate a phone menu).",
}

def definitions(tools: list[ToolSpec]) -> list[ToolDefinition]:
    """The tools as offered to the LLM."""
    out = []
    for tool in tools:
        if tool.type == "builtin":
            params = tool.parameters if tool.parameters.get("properties") else _BUILTIN_PARAMETERS[tool.name]
            description = tool.description or _BUILTIN_DESCRIPTIONS[tool.name]
        else:
            params, description = tool.parameters, tool.description or f"Call {tool.name}."
        out.append(ToolDefinition(tool.name, description, params))
    return out
