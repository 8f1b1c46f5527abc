"""`ToolBox`: the runner for each tool name of an agent."""

from __future__ import annotations

from parley.agents.spec import ToolSpec
from parley.engine.tools.base import ToolContext, ToolOutcome, ToolRunner
from parley.engine.tools.builtins import EndCall, SendDtmf, TransferCall
from parley.engine.tools.definitions import definitions
from parley.engine.tools.http import HttpTool
from parley.providers.base import ToolCall, ToolDefinition


class ToolBox:
    """An agent's tools: the definitions offered to the LLM and a runner per name.

    The built-ins answer to their names even when the agent does not list them (the LLM asked for one
    anyway: it acts as a call would); HTTP tools answer to their configured names."""

    def __init__(self, tools: list[ToolSpec]) -> None:
        self.specs = {t.name: t for t in tools}
        self.definitions: list[ToolDefinition] | None = definitions(tools) or None
        transfer = self.specs.get("transfer_call")
        self._runners: dict[str, ToolRunner] = {
            "end_call": EndCall(),
            "transfer_call": TransferCall(transfer.target if transfer else None),
            "send_dtmf": SendDtmf(),
        }
        for spec in tools:
            if spec.type == "http" and spec.name not in self._runners:
                self._runners[spec.name] = HttpTool(spec)

    def runner(self, name: str) -> ToolRunner | None:
        return self._runners.get(name)

    def is_final(self, name: str) -> bool:
        """A reply calling this tool is said to its end (see `ToolRunner.final`)."""
        runner = self._runners.get(name)
        return runner is not None and runner.final

    def message(self, name: str) -> str:
        """The tool's configured line to say when the LLM gave no text ("" when none)."""
        spec = self.specs.get(name)
        return spec.message if spec is not None and spec.message else ""

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolOutcome:
        """Run one call; an unknown tool is an error told to the LLM."""
        runner = self._runners.get(call.name)
        if runner is None:
            return ToolOutcome(False, f"error: unknown tool {call.name!r}")
        return await runner.run(call, ctx)
