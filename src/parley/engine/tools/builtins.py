"""The built-in tools: `end_call`, `transfer_call`, `send_dtmf`, acting on the line."""

from __future__ import annotations

from typing import Any

from parley.engine.tools.base import ToolContext, ToolOutcome
from parley.providers.base import ToolCall

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


def dtmf_digits(arguments: dict[str, Any]) -> str:
    """The valid digits of a `send_dtmf` call (`ValueError` if there are none or any is invalid)."""
    digits = str(arguments.get("digits", "")).replace(" ", "").replace(",", "")
    if not digits or any(d not in DTMF_DIGITS for d in digits):
        raise ValueError(f"invalid DTMF digits {digits!r}; use 0-9, *, # or A-D")
    return digits


class EndCall:
    """Hang up once the goodbye has been heard."""

    final = True

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolOutcome:
        await ctx.played()
        return ToolOutcome(True, "call ended", ends_call="agent_ended")


class TransferCall:
    """Hand the caller over to `target` from the call's arguments, else the configured one."""

    final = True

    def __init__(self, target: str | None = None) -> None:
        self.target = target

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolOutcome:
        await ctx.played()
        target = str(call.arguments.get("target") or self.target or "")
        if not target:
            return ToolOutcome(False, "error: no transfer target given or configured")
        if not await ctx.line.transfer(target):
            return ToolOutcome(False, f"error: transfer to {target} failed")
        return ToolOutcome(True, f"transferred to {target}", ends_call="transferred")


class SendDtmf:
    """Press keys on the line (after the words so far have been heard)."""

    final = False

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolOutcome:
        try:
            digits = dtmf_digits(call.arguments)
        except ValueError as exc:
            return ToolOutcome(False, f"error: {exc}")
        await ctx.played()
        await ctx.line.send_dtmf(digits)
        return ToolOutcome(True, f"sent {digits}")
