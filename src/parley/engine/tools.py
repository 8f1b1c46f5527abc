"""Tools the LLM may call: definitions offered to it, and the HTTP tool runner.

Built-ins (`end_call`, `transfer_call`, `send_dtmf`) act through the `MediaChannel` and are run by the
`Conversation`; HTTP tools send the arguments to the configured URL (query string for GET, JSON body
otherwise) and hand the response body back to the LLM as the tool result.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from parley.agents.spec import ToolSpec
from parley.providers.base import ToolDefinition

#: Longest tool result fed back to the LLM (characters).
MAX_RESULT_CHARS = 4000

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

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


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


async def call_http_tool(
    tool: ToolSpec, arguments: dict[str, Any], client: httpx.AsyncClient
) -> tuple[bool, str]:
    """Run an HTTP tool: (ok, result text for the LLM). Failures are reported in words, never raised."""
    assert tool.url is not None
    try:
        if tool.method == "GET":
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
            response = await client.request(
                "GET", tool.url, params=params, headers=tool.headers, timeout=tool.timeout_s
            )
        else:
            response = await client.request(
                tool.method, tool.url, json=arguments, headers=tool.headers, timeout=tool.timeout_s
            )
    except httpx.TimeoutException:
        return False, f"error: {tool.name} did not answer within {tool.timeout_s:g} s"
    except httpx.HTTPError as exc:
        return False, f"error: {tool.name} could not be reached ({type(exc).__name__}: {exc})"
    body = response.text[:MAX_RESULT_CHARS]
    if response.status_code >= 400:
        return False, f"error: {tool.name} answered HTTP {response.status_code}: {body}"
    return True, body


_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


async def shared_client() -> httpx.AsyncClient:
    """One HTTP client per event loop for every conversation's HTTP tools (made on first use; the TLS
    context, ~0.1 s of CPU, is built in a thread so the loop never stalls)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for old in [lp for lp in _clients if lp.is_closed()]:
            del _clients[old]
        context = await asyncio.to_thread(httpx.create_ssl_context)
        client = _clients.setdefault(loop, httpx.AsyncClient(verify=context))
    return client


def dtmf_digits(arguments: dict[str, Any]) -> str:
    """The valid digits of a `send_dtmf` call (`ValueError` if there are none or any is invalid)."""
    digits = str(arguments.get("digits", "")).replace(" ", "").replace(",", "")
    if not digits or any(d not in DTMF_DIGITS for d in digits):
        raise ValueError(f"invalid DTMF digits {digits!r}; use 0-9, *, # or A-D")
    return digits
