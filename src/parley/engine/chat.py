"""`TextChat`: an agent's LLM and tools with typed turns instead of speech (for `parley chat`).

Same prompt, history and tool handling as a call, without audio: the fastest way to try a prompt or a
scripted agent's intents. Built-in tools are reported rather than acted on (there is no line to hang up
or transfer); HTTP tools really run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from parley.agents.spec import AgentSpec
from parley.engine.tools import ToolBox, ToolContext
from parley.providers.base import LLM, Message, ToolCall


class _ReportedLine:
    """No line in a typed chat: keys are "sent" and transfers "succeed" without acting."""

    async def send_dtmf(self, digits: str) -> None:
        return None

    async def transfer(self, target: str) -> bool:
        return True


@dataclass
class ChatReply:
    """The agent's answer to one typed turn."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)
    ended: str | None = None  # `agent_ended` or `transferred` when the agent closed the conversation


class TextChat:
    """Typed conversation with an agent's LLM."""

    def __init__(
        self,
        agent: AgentSpec,
        llm: LLM,
        *,
        system_prompt: str = "",
        greeting: str = "",
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.agent = agent
        self.llm = llm
        self.http = http
        self.history: list[Message] = [Message("system", system_prompt)] if system_prompt else []
        if greeting:
            self.history.append(Message("assistant", greeting))
        self._tools = ToolBox(agent.tools)

    async def send(self, text: str) -> ChatReply:
        """Add the user's `text` and return the agent's full reply (after any tool rounds)."""
        self.history.append(Message("user", text))
        reply = ChatReply("")
        said: list[str] = []
        for _ in range(4):
            parts: list[str] = []
            calls: list[ToolCall] = []
            async for chunk in self.llm.chat(list(self.history), self._tools.definitions):
                parts.append(chunk.text)
                if chunk.tool_call is not None:
                    calls.append(chunk.tool_call)
            round_text = " ".join("".join(parts).split())
            if round_text:
                said.append(round_text)
            self.history.append(Message("assistant", round_text, tool_calls=calls))
            if not calls:
                break
            reply.tool_calls.extend(calls)
            for call in calls:
                result = await self._run(call, reply)
                reply.tool_results.append(result)
                self.history.append(Message("tool", result, tool_call_id=call.id, name=call.name))
            if reply.ended:
                break
        reply.text = " ".join(said)
        return reply

    async def _run(self, call: ToolCall, reply: ChatReply) -> str:
        outcome = await self._tools.run(call, ToolContext(_ReportedLine(), http=self.http))
        reply.ended = reply.ended or outcome.ends_call
        return outcome.result

    @staticmethod
    def describe(call: ToolCall) -> str:
        """`name(arg=value, …)` for printing."""
        args: dict[str, Any] = call.arguments
        return f"{call.name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
