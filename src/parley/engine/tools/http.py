"""HTTP tools: the arguments go to the configured URL (query string for GET, JSON body otherwise) and the
response body comes back to the LLM as the tool result."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from parley.agents.spec import ToolSpec
from parley.engine.tools.base import ToolContext, ToolOutcome
from parley.providers.base import ToolCall
from parley.settings import get_settings
from parley.support.egress import EgressPolicy
from parley.support.egress_http import EgressBlocked, guarded_client

#: Longest tool result fed back to the LLM (characters).
MAX_RESULT_CHARS = 4000


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
    except EgressBlocked as exc:
        return False, f"error: {tool.name} could not be reached ({exc})"
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
    context, ~0.1 s of CPU, is built in a thread so the loop never stalls). Every request it sends obeys
    the egress policy of `WEBHOOK_ALLOWED_HOSTS` / `WEBHOOK_ALLOW_LOOPBACK` (support/egress.py)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for old in [lp for lp in _clients if lp.is_closed()]:
            del _clients[old]
        context = await asyncio.to_thread(httpx.create_ssl_context)
        client = _clients.setdefault(loop, guarded_client(EgressPolicy.of(get_settings()), verify=context))
    return client


class HttpTool:
    """Runs one configured HTTP tool."""

    final = False

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolOutcome:
        client = ctx.http or await shared_client()
        ok, result = await call_http_tool(self.spec, call.arguments, client)
        return ToolOutcome(ok, result)
