"""Tools the LLM may call: what is offered to it (`definitions`), and how each call is run.

`ToolBox(agent.tools)` is the registry: one `ToolRunner` per tool name — the built-ins `end_call`,
`transfer_call`, `send_dtmf` (`builtins.py`, acting on the line) and every HTTP tool (`http.py`).
A runner returns a `ToolOutcome` (result text for the LLM, and the end reason when the call is over);
it never raises for a failed tool: the failure goes back to the LLM in words.
"""

from parley.engine.tools.base import ToolContext, ToolLine, ToolOutcome, ToolRunner
from parley.engine.tools.definitions import definitions
from parley.engine.tools.registry import ToolBox

__all__ = ["ToolBox", "ToolContext", "ToolLine", "ToolOutcome", "ToolRunner", "definitions"]
