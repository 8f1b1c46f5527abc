"""What a tool runner is, what it may act on, and what it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from parley.providers.base import ToolCall


class ToolLine(Protocol):
    """The line the built-in tools act on (a `MediaChannel` in a call)."""

    async def send_dtmf(self, digits: str) -> None: ...

    async def transfer(self, target: str) -> bool: ...


async def _nothing_to_wait_for() -> None:
    return None


@dataclass(frozen=True)
class ToolContext:
    """What a runner may use: the line, a wait until the agent's words so far have been heard (so a
    hand-over or key press comes after them), and the HTTP client (None: one shared per event loop)."""

    line: ToolLine
    played: Callable[[], Awaitable[None]] = _nothing_to_wait_for
    http: httpx.AsyncClient | None = None


@dataclass(frozen=True)
class ToolOutcome:
    """A finished tool call: `result` goes back to the LLM; `ends_call` is the end reason when the call
    is over (`agent_ended`, `transferred`)."""

    ok: bool
    result: str
    ends_call: str | None = None


class ToolRunner(Protocol):
    """Runs the calls of one tool. `final`: a reply carrying this call is said to its end, never
    interrupted (a goodbye, a hand-over)."""

    final: bool

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolOutcome: ...
